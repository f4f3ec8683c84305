"""``airpack status``: the installed versions, which is active, and whether it runs and answers now.

A status read never writes: a switch that a killed command left unfinished is reported (``pending``), and the
next install, rollback or uninstall undoes it under the prefix lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from airpack.errors import InstallError
from airpack.install import engine, host, targets, versions
from airpack.install.health import probe
from airpack.install.results import StatusReport, VersionStatus
from airpack.install.versions import Pending


def running(pending: Pending | None) -> bool:
    """Whether the command that journaled ``pending`` still runs (its pid is alive on this host)."""
    if pending is None or pending.pid <= 0:
        return False
    try:
        os.kill(pending.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(prefix: Path, *, client: Any = None) -> StatusReport:
    """What is installed at ``prefix``; the active version's container (where one runs) and health now."""
    prefix = prefix.absolute()
    record = versions.read_record(prefix)
    if record is None or record.active is None:
        if record is not None and record.pending is not None:
            p = record.pending
            if running(p):
                raise InstallError(f"{prefix}: a first install is in progress ({p.phase})")
            raise InstallError(f"{prefix}: a first install was interrupted ({p.phase})",
                               hint="the next install, rollback or uninstall undoes it")
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE})")
    st = versions.read_version(prefix, record.active)
    if st is None:
        raise InstallError(f"{prefix}: the active version {record.active} has no record")
    docker = None
    if targets.of_record(record).local_engine:  # its versions' containers run in this host's engine
        with contextlib.suppress(InstallError, *engine.docker_errors()):
            docker = engine.connect(client)
    listed = tuple(
        VersionStatus(id=vid, version=v.version, digest=v.digest, installed=v.installed,
                      container_name=v.container_name,
                      container=_container(docker, v.container_id)
                      if targets.of_state(v).container_engine or vid == record.active else None,
                      active=vid == record.active, previous=vid == record.previous)
        for vid, v in versions.installed(prefix).items())  # one systemd unit: its container is the active one
    code, body = probe(st.health_url) if st.health_url else (None, "no health URL recorded")
    return StatusReport(prefix=str(prefix), state=st, container=_container(docker, st.container_id),
                        health_status=code, health_body=body[:120], active=record.active,
                        previous=record.previous, pending=record.pending, versions=listed,
                        pending_running=running(record.pending))


def _container(client: Any, ref: str) -> dict[str, Any] | None:
    if client is None:
        return None
    with contextlib.suppress(InstallError, *engine.docker_errors()):
        return engine.state(client, ref)
    return None
