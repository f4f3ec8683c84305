"""Switching the active version of a prefix: bring one up (health + smoke), put another back, undo a journal.

The endpoint's port stays the same across versions, so two versions never answer at once: a switch stops the
old container (keeping it), starts the new one and checks it; on failure it removes (or stops) the new one and
starts the old one again, and checks that too. The record's ``pending`` journal is written before the first
container is touched and cleared by the write that commits the switch, so :func:`undo` can always put a
prefix back to the version that was active before the switch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, HealthError, InstallError, RefusedError
from airpack.install import audit, engine, host, versions
from airpack.install.health import SmokeResult, smoke_test, wait_healthy
from airpack.install.versions import Pending, Record

LABEL_VERSION_ID = "io.airpack.version-id"
DEFAULT_START_S = 300.0
Event = Callable[[str], None]


def spec_to_dict(spec: engine.ContainerSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_dict(d: dict[str, Any]) -> engine.ContainerSpec:
    """The stored container spec (lists back to tuples), to recreate a container someone removed."""
    def tup(v: Any) -> Any:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return engine.ContainerSpec(**{k: tup(v) for k, v in d.items()})


def stop(client: Any, ref: str) -> bool:
    """Stop a container and keep it (its restart policy is ``unless-stopped``: it stays stopped)."""
    import docker.errors  # noqa: PLC0415

    try:
        client.containers.get(ref).stop(timeout=10)
    except docker.errors.NotFound:
        return False
    except engine.docker_errors() as exc:
        raise InstallError(f"stopping container {ref} failed: {exc}") from None
    return True


def containers_of(client: Any, prefix: Path, vid: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": [f"{engine.LABEL_PREFIX}={prefix}",
                                                                f"{LABEL_VERSION_ID}={vid}"]})
    return [str(c.id) for c in found]


def check(client: Any, st: host.InstallState, container_id: str, say: Event,
          timeout: float | None = None, on_healthy: Callable[[], None] | None = None,
          alive: Callable[[], str | None] | None = None) -> SmokeResult:
    """Wait until the version answers its health URL, then one chat completion must work. ``alive`` says why
    the engine stopped (default: its container exited; a systemd unit passes ``systemctl is-failed``)."""
    limit = timeout or float(st.extra.get("startPeriod") or DEFAULT_START_S)
    wait_healthy(st.health_url, timeout=limit, alive=alive or (lambda: engine.exited(client, container_id)),
                 on_event=say)
    if on_healthy is not None:
        on_healthy()
    say(f"smoke test of {st.name} {st.version}: one chat completion")
    key = host.read_api_key(Path(st.api_key_file)) if st.api_key_file else None
    smoke = smoke_test(st.endpoint.removesuffix("/v1"), str(st.extra.get("servedName") or st.name), key)
    if not smoke.ok:
        raise HealthError(f"smoke test of {st.name} {st.version} failed: {smoke.error}")
    return smoke


def record_smoke(prefix: Path, vid: str, st: host.InstallState, smoke: SmokeResult) -> host.InstallState:
    """Keep the smoke test just run (with its time) as the version's last one: status and the command that
    ran it report this one, not the one from install time."""
    st = replace(st, smoke={**smoke.to_dict(), "at": versions.now()})
    versions.write_version(prefix, vid, st)
    return st


def failure(client: Any, container_id: str, exc: AirpackError) -> str:
    """The reason plus the container's last log lines."""
    logs = engine.last_logs(client, container_id) if container_id else []
    tail = " | ".join(logs)  # one line: error messages escape control characters, line breaks included
    return exc.message + (f"; its last log lines: {tail}" if tail else "")


def resume(client: Any, prefix: Path, vid: str, say: Event) -> host.InstallState:
    """Start a kept version's container again (recreated from its stored spec when it is gone) and check it."""
    st = versions.read_version(prefix, vid)
    if st is None:
        raise InstallError(f"version {vid} has no record under {versions.version_dir(prefix, vid)}")
    if st.target == "compose":  # a Compose project per version (airpack/install/targets_compose.py)
        from airpack.install import targets_compose  # noqa: PLC0415

        return targets_compose.resume(client, prefix, vid, st, say)
    if st.target == "systemd":  # one unit, switched to the version's own unit file
        from airpack.install import targets_systemd  # noqa: PLC0415

        return targets_systemd.resume(prefix, vid, st, say)
    import docker.errors  # noqa: PLC0415

    versions.point_current(prefix, vid)
    cid = st.container_id
    try:
        container = client.containers.get(cid)
        if container.status != "running":
            say(f"starting {st.container_name} again")
            container.start()
    except docker.errors.NotFound:
        stored = st.extra.get("container")
        if not isinstance(stored, dict):
            raise InstallError(f"the container of {st.name} {st.version} is gone and cannot be recreated",
                               hint="install that bundle again") from None
        say(f"recreating {st.container_name}")
        engine.remove(client, st.container_name)
        cid = engine.start(client, spec_from_dict(stored))
        st = replace(st, container_id=cid)
        versions.write_version(prefix, vid, st)
    return record_smoke(prefix, vid, st, check(client, st, cid, say))


def bring_back(client: Any, prefix: Path, vid: str | None, say: Event) -> str:
    """After a failed switch: the old version answering again, or why it does not (never raises)."""
    if vid is None:
        versions.point_current(prefix, None)
        return "nothing was installed before"
    try:
        st = resume(client, prefix, vid, say)
    except (AirpackError, *engine.docker_errors()) as exc:  # type: ignore[misc]
        return f"restoring the previous version {vid} FAILED too: {exc}"
    return f"{st.name} {st.version} is answering again at {st.endpoint}"


def tidy(prefix: Path, record: Record) -> Record:
    """Forget versions whose folder is gone."""
    have = set(versions.installed(prefix))
    return replace(record, active=record.active if record.active in have else None,
                   previous=record.previous if record.previous in have and record.previous != record.active
                   else None)


def commit(prefix: Path, record: Record | None) -> Record | None:
    """Write the record (or remove it when no version is left)."""
    if record is None or (record.active is None and not versions.installed(prefix)):
        with contextlib.suppress(FileNotFoundError):
            (prefix / host.STATE_FILE).unlink()
        versions.point_current(prefix, None)
        return None
    if record.extra.get("target") == "compose":
        st = versions.read_version(prefix, record.active or "")  # the active version's project, for people
        record = replace(record, extra={**record.extra, "composeProject": st.extra.get("composeProject")
                                        if st else None})
    versions.write_record(prefix, record)
    if record.active:
        versions.point_current(prefix, record.active)
    return record


def stop_version(client: Any, prefix: Path, vid: str, st: host.InstallState) -> None:
    """Stop a version and keep it: its container, or its Compose project (``docker-compose stop``)."""
    if st.target == "compose":
        from airpack.install import targets_compose  # noqa: PLC0415

        targets_compose.stop(prefix, vid, st)
    elif st.target == "systemd":
        from airpack.install import targets_systemd  # noqa: PLC0415

        targets_systemd.stop(st)
    else:
        stop(client, st.container_id)


def settle(prefix: Path, name: str, *, client: Any = None, say: Event | None = None,
           target: str | None = None) -> tuple[Record | None, host.InstallState | None]:
    """The prefix's record and active version before an install: a switch that a killed command left half done
    is undone first (when an engine client is given), and a prefix that holds another bundle, or runs this one
    with another target, is refused."""
    record = versions.read_record(prefix)  # a single-version install is migrated into versions/ first
    if client is not None and say is not None and record is not None and record.pending is not None:
        record = undo(client, prefix, record, say)
    if record is not None and record.name != name:
        raise RefusedError(f"the prefix holds {record.name}, not {name}",
                           hint="uninstall it first, or choose another --prefix")
    current = versions.read_version(prefix, record.active) if record and record.active else None
    if target is not None and current is not None and current.target != target:
        raise RefusedError(f"{prefix} runs {current.name} {current.version} with --target {current.target}",
                           hint="uninstall it first, or install with that target")
    return record, current


def undo(client: Any, prefix: Path, record: Record, say: Event, *, log: bool = True) -> Record | None:
    """Put a prefix with a pending switch back to the version that was active before it."""
    p = record.pending
    if p is None:
        return record
    say(f"undoing an unfinished {p.op} of {p.target} (phase {p.phase})")
    if p.new and record.extra.get("target") == "compose":
        from airpack.install import targets_compose  # noqa: PLC0415

        targets_compose.undo_new(client, prefix, record, p.target)
        versions.remove_version_dir(prefix, p.target)
    elif p.new and record.extra.get("target") == "systemd":
        from airpack.install import targets_systemd  # noqa: PLC0415

        targets_systemd.undo_new(record, p)
        versions.remove_version_dir(prefix, p.target)
    elif p.new:
        for cid in containers_of(client, prefix, p.target):
            engine.remove(client, cid)
        versions.remove_version_dir(prefix, p.target)
    elif (target := versions.read_version(prefix, p.target)) is not None:
        stop_version(client, prefix, p.target, target)
    versions.clean_partials(prefix)
    outcome = bring_back(client, prefix, p.source, say)
    restored = commit(prefix, tidy(prefix, replace(record, pending=None)))
    st = versions.read_version(prefix, p.source) if p.source else None
    ok = p.source is None or "FAILED" not in outcome
    if not log:
        return restored
    audit.append(prefix, audit.entry("recover", name=record.name, version=st.version if st else None,
                                     digest=st.digest if st else None,
                                     key_fingerprint=st.key_fingerprint if st else None,
                                     outcome="ok" if ok else "failed", reason=f"undid {p.op} to {p.target} "
                                     f"(phase {p.phase}): {outcome}"))
    return restored


def rollback(prefix: Path, *, client: Any = None, on_event: Event | None = None) -> dict[str, Any]:
    """Make the previous version active again: stop the active one (kept), start the previous, check it."""
    say = on_event or (lambda _: None)
    prefix = prefix.absolute()
    with versions.locked(prefix):
        record = versions.read_record(prefix)
        if record is not None and record.extra.get("target") == "kubernetes":  # nothing of it runs here
            from airpack.install.targets_hosts import kubernetes_rollback  # noqa: PLC0415

            return kubernetes_rollback(prefix, record, say)
        client = engine_for(record, client)
        if record is not None and record.pending is not None:
            record = undo(client, prefix, record, say)
        if record is not None and record.extra.get("target") == "systemd":
            from airpack.install import targets_systemd  # noqa: PLC0415

            if not targets_systemd.running():  # nothing runs here: swap the record, give the commands
                return targets_systemd.rollback_files(prefix, record, say)
        rb = versions.rollback_pair(prefix, record)
        record, active, target = rb.record, rb.active, rb.target
        record = replace(record, pending=Pending("rollback", rb.active_id, rb.previous_id, False, "stopping",
                                                 pid=_pid(), started=versions.now()))
        versions.write_record(prefix, record)
        stop_version(client, prefix, rb.active_id, active)
        record = versions.set_phase(prefix, record, "starting")
        try:
            st = resume(client, prefix, rb.previous_id, say)
        except (AirpackError, *engine.docker_errors()) as exc:  # type: ignore[misc]
            reason = failure_of(client, target, exc) if isinstance(exc, AirpackError) else str(exc)
            with contextlib.suppress(AirpackError, *engine.docker_errors()):
                stop_version(client, prefix, rb.previous_id, target)
            outcome = bring_back(client, prefix, rb.active_id, say)
            commit(prefix, replace(record, pending=None))
            audit.append(prefix, audit.entry("rollback", name=target.name, version=target.version,
                                             digest=target.digest, key_fingerprint=target.key_fingerprint,
                                             outcome="failed", reason=f"{reason}; {outcome}",
                                             previous=active.version))
            raise HealthError(f"rollback to {target.version} failed: {reason}; {outcome}",
                              hint="'airpack status' shows what runs") from None
        commit(prefix, replace(record, active=rb.previous_id, previous=rb.active_id, pending=None))
        audit.append(prefix, audit.entry("rollback", name=st.name, version=st.version, digest=st.digest,
                                         key_fingerprint=st.key_fingerprint, previous=active.version))
    return {"prefix": str(prefix), "name": st.name, "version": st.version, "previousVersion": active.version,
            "endpoint": st.endpoint, "containerName": st.container_name, "target": st.target, "started": True,
            "smoke": st.smoke, "commands": [], "alternativeCommands": []}


def engine_for(record: Record | None, client: Any = None) -> Any:
    """The Docker client a command on this prefix needs: none for a systemd prefix (its unit runs the engine;
    status, rollback and uninstall work without Docker there), else the given one or one from the environment."""
    if record is not None and record.extra.get("target") == "systemd":
        return client
    return engine.connect(client)


def failure_of(client: Any, st: host.InstallState, exc: AirpackError) -> str:
    """The reason plus the engine's last log lines: the container's, or the systemd unit's journal."""
    if st.target == "systemd":
        from airpack.install import targets_systemd  # noqa: PLC0415

        return targets_systemd.failure(st, exc)
    return failure(client, st.container_id, exc)


def _pid() -> int:
    import os  # noqa: PLC0415

    return os.getpid()
