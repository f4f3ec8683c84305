"""Report on and remove what is installed at a prefix: ``status`` (every version, which is active, is it
healthy now) and ``uninstall`` (one version, or all of them). A single-version install of another target
(compose, systemd) is reported and removed as it was written.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, InstallError, RefusedError
from airpack.install import audit, engine, host, lifecycle, versions
from airpack.install import targets_run as tr
from airpack.install.health import probe


def _legacy(prefix: Path) -> bool:
    """A single-version record of another target (compose, systemd) that no install of that target has
    migrated into ``versions/`` yet: reported and removed as it was written."""
    with contextlib.suppress(InstallError):
        st = host.read_state(prefix)
        return st is not None and st.target != "docker"
    return False


def status(prefix: Path, *, client: Any = None) -> dict[str, Any]:
    """The installed versions, which is active, whether its container runs and answers now.

    An unfinished switch (a killed install or rollback) is undone first when no other command holds the
    prefix; while one does, it is reported as in progress.
    """
    prefix = prefix.absolute()
    if _legacy(prefix):
        return _legacy_status(prefix, client=client)
    if (prefix / host.STATE_FILE).exists():  # migrate or undo only under the lock; a holder is reported
        with contextlib.suppress(InstallError), versions.locked(prefix):
            record = versions.read_record(prefix)
            if record is not None and record.pending is not None:
                lifecycle.undo(lifecycle.engine_for(record, client), prefix, record, lambda _: None)
    record = versions.read_record(prefix)
    if record is None or record.active is None:
        if record is not None and record.pending is not None:
            raise InstallError(f"{prefix}: a first install is in progress ({record.pending.phase})")
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE})")
    st = versions.read_version(prefix, record.active)
    if st is None:
        raise InstallError(f"{prefix}: the active version {record.active} has no record")
    docker = None
    with contextlib.suppress(InstallError, *engine.docker_errors()):
        docker = engine.connect(client)
    listed = []
    for vid, v in versions.installed(prefix).items():
        listed.append({"id": vid, "version": v.version, "digest": v.digest, "installed": v.installed,
                       "containerName": v.container_name,
                       "container": _container(docker, v.container_id) if v.target in ("docker", "compose")
                       or vid == record.active else None,  # one systemd unit: its container is the active one
                       "active": vid == record.active, "previous": vid == record.previous})
    code, body = probe(st.health_url) if st.health_url else (None, "no health URL recorded")
    return {"prefix": str(prefix), "name": st.name, "version": st.version, "digest": st.digest,
            "endpoint": st.endpoint, "containerName": st.container_name, "containerId": st.container_id,
            "container": _container(docker, st.container_id), "healthy": code == 200,
            "health": {"url": st.health_url, "status": code, "body": body[:120]}, "installed": st.installed,
            "smoke": st.smoke, "apiKeyFile": st.api_key_file, "active": record.active,
            "previous": record.previous, "pending": record.pending.to_dict() if record.pending else None,
            "versions": listed, "target": st.target, "unit": st.extra.get("unit")}


def _container(client: Any, ref: str) -> dict[str, Any] | None:
    if client is None:
        return None
    with contextlib.suppress(InstallError, *engine.docker_errors()):
        return engine.state(client, ref)
    return None


def uninstall(prefix: Path, *, version: str | None = None, remove_weights: bool = False,
              remove_images: bool = False, client: Any = None) -> dict[str, Any]:
    """Remove one version (``version``: its container and folder) or, without it, every version.

    Removing everything keeps the weights unless asked (``model`` still leads to them) and the audit log. A
    systemd or kubernetes prefix needs no Docker engine: what takes the unit or the cluster objects away is
    run where this host can (systemd as PID 1; kubectl for a version airpack applied) and returned otherwise.
    """
    prefix = prefix.absolute()
    if _legacy(prefix) and version is None:
        return _legacy_uninstall(prefix, remove_weights=remove_weights, remove_images=remove_images,
                                 client=client)
    with versions.locked(prefix):
        record = versions.read_record(prefix)
        target = _target(record)
        client = engine.connect(client) if target in ("docker", "compose") else client
        if record is not None and record.pending is not None:
            record = lifecycle.undo(client, prefix, record, lambda _: None)
        if version is not None:
            return _uninstall_version(prefix, record, _match(prefix, record, version), client)
        if target in ("docker", "compose"):
            return _uninstall_all(prefix, record, client, remove_weights=remove_weights,
                                  remove_images=remove_images)
        return _uninstall_all_elsewhere(prefix, record, target, client, remove_weights=remove_weights,
                                        remove_images=remove_images)


def _target(record: versions.Record | None) -> str:
    """Who runs a prefix's versions: docker (airpack's containers), compose, systemd or kubernetes."""
    return str(record.extra.get("target") or "docker") if record is not None else "docker"


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


def _uninstall_all(prefix: Path, record: versions.Record | None, client: Any, *, remove_weights: bool,
                   remove_images: bool) -> dict[str, Any]:
    found = set(engine.containers_for(client, str(prefix)))
    if record is None and not found:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE}, no container)")
    states = versions.installed(prefix)
    projects = [p for vid, st in states.items() for p in _compose_down(prefix, vid, st, client)]
    removed = [c for c in sorted(found | {st.container_id for st in states.values()}) if engine.remove(client, c)]
    images: list[str] = []
    if remove_images:
        for st in states.values():
            images += _remove_images(client, st)
    gone = _remove_files(prefix, states, remove_weights=remove_weights)
    _audit_all(prefix, record, states, containersRemoved=len(removed))
    return {"prefix": str(prefix), "name": record.name if record else None, "containersRemoved": removed,
            "composeProjectsDown": projects, "commands": [], "alternativeCommands": [], "ran": [],
            "imagesRemoved": images, "filesRemoved": gone, "weightsKept": not remove_weights,
            "versionsRemoved": sorted(states)}


def _uninstall_all_elsewhere(prefix: Path, record: versions.Record | None, target: str, client: Any, *,
                             remove_weights: bool, remove_images: bool) -> dict[str, Any]:
    """Every version of a systemd or kubernetes prefix: take the unit (or the cluster objects) away where this
    host can, else return the commands; then the files. No Docker engine is needed (but for --remove-images)."""
    if record is None:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE})")
    states = versions.installed(prefix)
    if target == "systemd":
        from airpack.install import targets_systemd  # noqa: PLC0415

        commands, alternatives = targets_systemd.remove_commands(record, states)
        run_here = targets_systemd.running()
    else:
        from airpack.install import targets_hosts  # noqa: PLC0415

        commands, run_here = targets_hosts.delete_commands(prefix, record, states)
        alternatives = []
    errors: list[str] = []
    for argv in commands if run_here else ():
        if target == "systemd":  # a unit that was never installed cannot be disabled: its files still go
            try:
                tr.run(argv)
            except InstallError as exc:
                errors.append(exc.message)
        else:  # kubectl failed (no cluster?): keep the manifests, to delete with them later
            tr.run(argv)
    images: list[str] = []
    if remove_images and target == "systemd":
        docker = engine.connect(client)
        for st in states.values():
            images += _remove_images(docker, st)
    gone = _remove_files(prefix, states, remove_weights=remove_weights)
    _audit_all(prefix, record, states, ran=bool(commands) and run_here)
    return {"prefix": str(prefix), "name": record.name, "containersRemoved": [], "composeProjectsDown": [],
            "target": target, "ran": [tr.shell_line(c) for c in commands] if run_here else [],
            "commandErrors": errors,
            "commands": [] if run_here else [tr.shell_line(c) for c in commands],
            "alternativeCommands": [] if run_here else [tr.shell_line(c) for c in alternatives],
            "imagesRemoved": images, "filesRemoved": gone, "weightsKept": not remove_weights,
            "versionsRemoved": sorted(states)}


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
                       scope: str = "version") -> dict[str, Any]:
    """One version that is not active: its container or Compose project (docker, compose) and its folder. A
    systemd unit and a cluster run the active version, so nothing else is stopped for the other targets."""
    st = versions.installed(prefix).get(vid)
    if record is None or st is None:
        raise InstallError(f"{prefix}: version {vid} is not installed here")
    if vid == record.active:
        raise RefusedError(f"{st.version} is the active version",
                           hint="roll back or install another version first, or uninstall --all")
    projects: list[str] = []
    removed: list[str] = []
    if st.target in ("docker", "compose"):
        projects = _compose_down(prefix, vid, st, client)
        removed = sorted(c for c in {st.container_id, *lifecycle.containers_of(client, prefix, vid)}
                         if engine.remove(client, c))
    versions.remove_version_dir(prefix, vid)
    lifecycle.commit(prefix, lifecycle.tidy(prefix, record))
    audit.append(prefix, audit.entry("uninstall", name=st.name, version=st.version, digest=st.digest,
                                     key_fingerprint=st.key_fingerprint, scope=scope))
    return {"prefix": str(prefix), "name": st.name, "containersRemoved": removed, "imagesRemoved": [],
            "composeProjectsDown": projects, "commands": [], "alternativeCommands": [], "ran": [],
            "filesRemoved": [f"{versions.VERSIONS_DIR}/{vid}"], "weightsKept": False, "versionsRemoved": [vid]}


def _compose_down(prefix: Path, vid: str, st: host.InstallState, client: Any) -> list[str]:
    """``docker-compose down`` for a version of the compose target (its project, network, containers)."""
    if st.target != "compose":
        return []
    from airpack.install import targets_compose  # noqa: PLC0415

    return targets_compose.down(prefix, vid, st, client)


def _legacy_status(prefix: Path, *, client: Any = None) -> dict[str, Any]:
    """A single-version install of another target (compose, systemd): its record at the prefix root."""
    st = host.read_state(prefix)
    if st is None:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE})")
    container = None
    with contextlib.suppress(InstallError, *engine.docker_errors()):
        container = engine.state(engine.connect(client), st.container_id)
    code, body = probe(st.health_url) if st.health_url else (None, "no health URL recorded")
    return {"prefix": str(prefix), "name": st.name, "version": st.version, "digest": st.digest,
            "endpoint": st.endpoint, "containerName": st.container_name, "containerId": st.container_id,
            "container": container, "healthy": code == 200, "health": {"url": st.health_url, "status": code,
                                                                         "body": body[:120]},
            "installed": st.installed, "smoke": st.smoke, "apiKeyFile": st.api_key_file}


def _legacy_uninstall(prefix: Path, *, remove_weights: bool = False, remove_images: bool = False,
              client: Any = None) -> dict[str, Any]:
    """Remove a single-version install of another target; the state goes last."""
    st = host.read_state(prefix)
    client = engine.connect(client)
    found = set(engine.containers_for(client, str(prefix)))
    if st is None and not found:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE}, no container)")
    removed = [c for c in sorted(found | ({st.container_id} if st else set())) if engine.remove(client, c)]
    images: list[str] = []
    if remove_images and st is not None:
        images = _remove_images(client, st)
    gone = host.remove_prefix_files(prefix, weights=remove_weights)
    return {"prefix": str(prefix), "name": st.name if st else None, "containersRemoved": removed,
            "imagesRemoved": images, "filesRemoved": gone, "weightsKept": not remove_weights}


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
