"""Report on and remove what is installed at a prefix: ``status`` (every version, which is active, is it
healthy now) and ``uninstall`` (one version, or all of them). A single-version install of another target
(compose, systemd) is reported and removed as it was written.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from airpack.errors import InstallError
from airpack.install import audit, engine, host, lifecycle, versions
from airpack.install.health import probe


def _legacy(prefix: Path) -> bool:
    """A single-version record of a target other than docker: left as it is (only docker has versions)."""
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
                lifecycle.undo(engine.connect(client), prefix, record, lambda _: None)
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
                       "containerName": v.container_name, "container": _container(docker, v.container_id),
                       "active": vid == record.active, "previous": vid == record.previous})
    code, body = probe(st.health_url) if st.health_url else (None, "no health URL recorded")
    return {"prefix": str(prefix), "name": st.name, "version": st.version, "digest": st.digest,
            "endpoint": st.endpoint, "containerName": st.container_name, "containerId": st.container_id,
            "container": _container(docker, st.container_id), "healthy": code == 200,
            "health": {"url": st.health_url, "status": code, "body": body[:120]}, "installed": st.installed,
            "smoke": st.smoke, "apiKeyFile": st.api_key_file, "active": record.active,
            "previous": record.previous, "pending": record.pending.to_dict() if record.pending else None,
            "versions": listed}


def _container(client: Any, ref: str) -> dict[str, Any] | None:
    if client is None:
        return None
    with contextlib.suppress(InstallError, *engine.docker_errors()):
        return engine.state(client, ref)
    return None


def uninstall(prefix: Path, *, version: str | None = None, remove_weights: bool = False,
              remove_images: bool = False, client: Any = None) -> dict[str, Any]:
    """Remove one version (``version``: its container and folder) or, without it, every version.

    Removing everything keeps the weights unless asked (``model`` still leads to them) and the audit log.
    """
    prefix = prefix.absolute()
    if _legacy(prefix) and version is None:
        return _legacy_uninstall(prefix, remove_weights=remove_weights, remove_images=remove_images,
                                 client=client)
    with versions.locked(prefix):
        record = versions.read_record(prefix)
        client = engine.connect(client)
        if record is not None and record.pending is not None:
            record = lifecycle.undo(client, prefix, record, lambda _: None)
        if version is not None:
            return _uninstall_version(prefix, record, version, client)
        return _uninstall_all(prefix, record, client, remove_weights=remove_weights, remove_images=remove_images)


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
    active = states.get(record.active or "") if record else None
    audit.append(prefix, audit.entry("uninstall", name=record.name if record else "?",
                                     version=active.version if active else None,
                                     digest=active.digest if active else None,
                                     key_fingerprint=active.key_fingerprint if active else None,
                                     scope="all", containersRemoved=len(removed)))
    return {"prefix": str(prefix), "name": record.name if record else None, "containersRemoved": removed,
            "composeProjectsDown": projects,
            "imagesRemoved": images, "filesRemoved": gone, "weightsKept": not remove_weights,
            "versionsRemoved": sorted(states)}


def _uninstall_version(prefix: Path, record: versions.Record | None, version: str, client: Any) -> dict[str, Any]:
    states = versions.installed(prefix)
    match = [vid for vid, st in states.items() if version in (vid, st.version)]
    if record is None or len(match) != 1:
        raise InstallError(f"{prefix}: " + (f"version {version} is not installed here" if not match
                                            else f"{version} names {len(match)} versions: {', '.join(match)}"),
                           hint="'airpack status' lists the installed versions by id")
    vid = match[0]
    if vid == record.active:
        raise InstallError(f"{version} is the active version",
                           hint="roll back or install another version first, or uninstall --all")
    st = states[vid]
    projects = _compose_down(prefix, vid, st, client)
    removed = [c for c in {st.container_id, *lifecycle.containers_of(client, prefix, vid)}
               if engine.remove(client, c)]
    versions.remove_version_dir(prefix, vid)
    lifecycle.commit(prefix, lifecycle.tidy(prefix, record))
    audit.append(prefix, audit.entry("uninstall", name=st.name, version=st.version, digest=st.digest,
                                     key_fingerprint=st.key_fingerprint, scope="version"))
    return {"prefix": str(prefix), "name": st.name, "containersRemoved": sorted(removed), "imagesRemoved": [],
            "composeProjectsDown": projects,
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
