"""``airpack uninstall`` and ``install --keep``: take versions away, their runtime (the target's: containers,
Compose projects; the unit or the cluster objects where this host can, else the commands) and their files.
Removing everything keeps the weights unless asked (``model`` still leads to them) and the audit log.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, InstallError, RefusedError
from airpack.install import audit, engine, host, lifecycle, targets, versions
from airpack.install.results import UninstallResult


def uninstall(prefix: Path, *, version: str | None = None, remove_weights: bool = False,
              remove_images: bool = False, client: Any = None) -> UninstallResult:
    """Remove one version (``version``: its runtime and folder) or, without it, every version.

    A target whose versions run outside the engine (systemd, kubernetes) needs no Docker engine: what takes
    the unit or the cluster objects away is run where this host can and returned otherwise.
    """
    prefix = prefix.absolute()
    with versions.locked(prefix):
        record = versions.read_record(prefix)
        target = targets.of_record(record)
        client = target.lifecycle_client(client)
        if record is not None and record.pending is not None:
            record = lifecycle.undo(client, prefix, record, lifecycle.quiet)
        if version is not None:
            return _uninstall_version(prefix, record, _match(prefix, record, version), client)
        states = versions.installed(prefix)
        removal = target.remove_all(prefix, record, states, client)
        images: list[str] = []
        if remove_images and target.local_engine:
            docker = engine.connect(client)
            for st in states.values():
                images += _remove_images(docker, st)
        gone = _remove_files(prefix, states, remove_weights=remove_weights)
        _audit_all(prefix, record, states, **removal.audit)
        return UninstallResult(
            prefix=str(prefix), name=record.name if record else None, containers_removed=removal.containers,
            compose_projects_down=removal.projects, images_removed=tuple(images), files_removed=tuple(gone),
            weights_kept=not remove_weights, versions_removed=tuple(sorted(states)), commands=removal.commands,
            alternatives=removal.alternatives, ran=removal.ran, target=removal.target,
            command_errors=removal.errors)


def prune(prefix: Path, keep: int | None, client: Any) -> list[str]:
    """``install --keep N``: remove the oldest versions (lowest first) that are neither active nor previous
    until at most ``keep`` are left; each is audited as ``uninstall`` with ``scope: prune``. Runs under the
    prefix lock, after a successful install."""
    if keep is None:
        return []
    record = versions.read_record(prefix)
    if record is None:
        return []
    states = versions.installed(prefix)
    extra = len(states) - keep
    gone = []
    for vid in states:
        if extra <= 0:
            break
        if vid in (record.active, record.previous):
            continue
        extra -= 1
        try:
            _uninstall_version(prefix, record, vid, client, scope="prune")
        except (AirpackError, OSError, *engine.docker_errors()) as exc:  # type: ignore[misc]
            st = states[vid]  # the install succeeded: a version that cannot be removed now is kept, and said so
            audit.append(prefix, audit.entry("uninstall", name=st.name, version=st.version, digest=st.digest,
                                             key_fingerprint=st.key_fingerprint, scope="prune", outcome="failed",
                                             reason=str(exc)))
            continue
        record = versions.read_record(prefix) or record
        gone.append(vid)
    return gone


def _remove_files(prefix: Path, states: dict[str, host.InstallState], *, remove_weights: bool) -> list[str]:
    """Every version's record and deploy files (and weights when asked), then the prefix's own files."""
    gone = host.remove_prefix_files(prefix, weights=remove_weights)
    for vid in states:
        if remove_weights:
            versions.remove_version_dir(prefix, vid)
        else:
            (versions.version_dir(prefix, vid) / versions.VERSION_STATE).unlink(missing_ok=True)
            shutil.rmtree(versions.version_dir(prefix, vid) / host.DEPLOY_DIR, ignore_errors=True)
        gone.append(f"{versions.VERSIONS_DIR}/{vid}" + ("" if remove_weights else f"/{versions.VERSION_STATE}"))
    if remove_weights:
        versions.point_current(prefix, None)
        versions.clean_partials(prefix)
        with contextlib.suppress(OSError):
            (prefix / versions.VERSIONS_DIR).rmdir()
    return gone


def _audit_all(prefix: Path, record: versions.Record | None, states: dict[str, host.InstallState],
               **more: Any) -> None:
    active = states.get(record.active or "") if record else None
    audit.append(prefix, audit.entry("uninstall", name=record.name if record else "?",
                                     version=active.version if active else None,
                                     digest=active.digest if active else None,
                                     key_fingerprint=active.key_fingerprint if active else None,
                                     scope="all", **more))


def _match(prefix: Path, record: versions.Record | None, version: str) -> str:
    """The one installed version ``version`` names (an id, or a version that only one id has)."""
    states = versions.installed(prefix)
    match = [vid for vid, st in states.items() if version in (vid, st.version)]
    if record is None or len(match) != 1:
        raise InstallError(f"{prefix}: " + (f"version {version} is not installed here" if not match
                                            else f"{version} names {len(match)} versions: {', '.join(match)}"),
                           hint="'airpack status' lists the installed versions by id")
    return match[0]


def _uninstall_version(prefix: Path, record: versions.Record | None, vid: str, client: Any,
                       scope: str = "version") -> UninstallResult:
    """One version that is not active: its runtime (the target's) and its folder."""
    st = versions.installed(prefix).get(vid)
    if record is None or st is None:
        raise InstallError(f"{prefix}: version {vid} is not installed here")
    if vid == record.active:
        raise RefusedError(f"{st.version} is the active version",
                           hint="roll back or install another version first, or uninstall --all")
    removal = targets.of_state(st).remove(prefix, vid, st, client)
    versions.remove_version_dir(prefix, vid)
    lifecycle.commit(prefix, lifecycle.tidy(prefix, record))
    audit.append(prefix, audit.entry("uninstall", name=st.name, version=st.version, digest=st.digest,
                                     key_fingerprint=st.key_fingerprint, scope=scope))
    return UninstallResult(prefix=str(prefix), name=st.name, containers_removed=removal.containers,
                           compose_projects_down=removal.projects,
                           files_removed=(f"{versions.VERSIONS_DIR}/{vid}",), weights_kept=False,
                           versions_removed=(vid,))


def _remove_images(client: Any, st: host.InstallState) -> list[str]:
    import docker.errors  # noqa: PLC0415

    removed = []
    for ref in (*st.image_tags, st.image_id):
        try:
            client.api.remove_image(ref, force=False, noprune=False)
            removed.append(ref)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if "conflict" not in str(exc).lower() and "being used" not in str(exc).lower():
                raise InstallError(f"removing image {ref} failed: {exc}") from None
    return removed
