"""Switching the active version of a prefix, for every target: bring one back, undo a journal, roll back.

The endpoint's port stays the same across versions, so two versions never answer at once: a switch stops the
old version (keeping it), starts the new one and checks it; on failure it takes the new one away and starts
the old one again, and checks that too. The record's ``pending`` journal is written before anything runs is
touched and cleared by the write that commits the switch, so :func:`undo` can always put a prefix back to the
version that was active before. What "stop", "start" and "check" mean is the target's
(:class:`~airpack.install.targets.base.Target`, looked up in :mod:`airpack.install.targets`); the order is here.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, HealthError, InstallError, RefusedError
from airpack.install import audit, engine, host, targets, versions
from airpack.install.results import RollbackResult
from airpack.install.versions import Pending, Record
from airpack.progress import Event


def quiet(_: str) -> None:
    return None


def resume(client: Any, prefix: Path, vid: str, say: Event) -> host.InstallState:
    """Run a kept version again (its target's way) and check it."""
    st = versions.read_version(prefix, vid)
    if st is None:
        raise InstallError(f"version {vid} has no record under {versions.version_dir(prefix, vid)}")
    return targets.of_state(st).resume(prefix, vid, st, client, say)


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
    """Write the record (or remove it when no version is left), with what its target says about the active
    version, and point ``current`` at the active version."""
    if record is None or (record.active is None and not versions.installed(prefix)):
        with contextlib.suppress(FileNotFoundError):
            (prefix / host.STATE_FILE).unlink()
        versions.point_current(prefix, None)
        return None
    active = versions.read_version(prefix, record.active) if record.active else None
    if fields := targets.of_record(record).record_fields(active):
        record = replace(record, extra={**record.extra, **fields})
    versions.write_record(prefix, record)
    if record.active:
        versions.point_current(prefix, record.active)
    return record


def settle(prefix: Path, name: str, *, client: Any = None, say: Event | None = None,
           target: str | None = None) -> tuple[Record | None, host.InstallState | None]:
    """The prefix's record and active version before an install: a switch that a killed command left half done
    is undone first (when ``say`` is given), and a prefix that holds another bundle, or runs this one with
    another target, is refused."""
    record = versions.read_record(prefix)
    if say is not None and record is not None and record.pending is not None:
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
    target = targets.of_record(record)
    if p.new:
        target.undo_new(prefix, record, p, client)
        versions.remove_version_dir(prefix, p.target)
    elif (st := versions.read_version(prefix, p.target)) is not None:
        targets.of_state(st).stop(prefix, p.target, st, client, say)
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


def rollback(prefix: Path, *, client: Any = None, on_event: Event | None = None) -> RollbackResult:
    """Make the previous version active again: stop the active one (kept), start the previous, check it. A
    target that cannot switch on this host swaps the record and gives (or runs) its commands instead."""
    say = on_event or quiet
    prefix = prefix.absolute()
    with versions.locked(prefix):
        record = versions.read_record(prefix)
        target = targets.of_record(record)
        client = target.lifecycle_client(client)
        if record is not None and record.pending is not None:
            record = undo(client, prefix, record, say)
        rb = versions.rollback_pair(prefix, record)
        record, active, previous = rb.record, rb.active, rb.target
        if not target.switches_here():
            result, fields = target.rollback_elsewhere(prefix, rb, say)
            commit(prefix, replace(record, active=rb.previous_id, previous=rb.active_id, pending=None))
            audit.append(prefix, audit.entry("rollback", name=previous.name, version=previous.version,
                                             digest=previous.digest, key_fingerprint=previous.key_fingerprint,
                                             previous=active.version, **fields))
            return result
        record = replace(record, pending=Pending("rollback", rb.active_id, rb.previous_id, False, "stopping",
                                                 pid=os.getpid(), started=versions.now()))
        versions.write_record(prefix, record)
        target.stop(prefix, rb.active_id, active, client, say)
        record = versions.set_phase(prefix, record, "starting")
        try:
            st = resume(client, prefix, rb.previous_id, say)
        except (AirpackError, *engine.docker_errors()) as exc:  # type: ignore[misc]
            reason = target.failure(client, previous, exc) if isinstance(exc, AirpackError) else str(exc)
            with contextlib.suppress(AirpackError, *engine.docker_errors()):
                target.stop(prefix, rb.previous_id, previous, client, say)
            outcome = bring_back(client, prefix, rb.active_id, say)
            commit(prefix, replace(record, pending=None))
            audit.append(prefix, audit.entry("rollback", name=previous.name, version=previous.version,
                                             digest=previous.digest, key_fingerprint=previous.key_fingerprint,
                                             outcome="failed", reason=f"{reason}; {outcome}",
                                             previous=active.version))
            raise HealthError(f"rollback to {previous.version} failed: {reason}; {outcome}",
                              hint="'airpack status' shows what runs") from None
        commit(prefix, replace(record, active=rb.previous_id, previous=rb.active_id, pending=None))
        audit.append(prefix, audit.entry("rollback", name=st.name, version=st.version, digest=st.digest,
                                         key_fingerprint=st.key_fingerprint, previous=active.version))
    return RollbackResult(prefix=str(prefix), name=st.name, version=st.version, previous_version=active.version,
                          endpoint=st.endpoint, container_name=st.container_name, target=st.target, started=True,
                          smoke=st.smoke)
