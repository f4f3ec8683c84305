"""What the install targets share: the deploy files each one takes, the port check, health + smoke test, and the
result of a target that writes deploy files."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import HealthError, InstallError
from airpack.install import engine, host, versions
from airpack.install.health import SmokeResult, probe, smoke_test, wait_healthy
from airpack.install.results import InstallResult
from airpack.install.targets import commands as tr
from airpack.install.targets.base import Plan
from airpack.install.versions import Record
from airpack.progress import Event
from airpack.render import HostParams

DEFAULT_START_S = 300.0


def files_with(target: str, deploy: Mapping[str, bytes], prefixes: Iterable[str], main: str) -> dict[str, bytes]:
    """The deploy files under ``prefixes`` (paths relative to ``deploy/``); at least one must start with
    ``main`` (the target's own file or folder), else the bundle was not built for ``target``."""
    keep = [r for r in deploy if any(r == p or (p.endswith("/") and r.startswith(p)) for p in prefixes)]
    if not any(r.startswith(main) for r in keep):
        raise InstallError(
            f"the bundle has no deploy files for {target} (no deploy/{main})",
            hint=f"rebuild it with '{target}' under deploy: in the spec, or choose another --target",
        )
    return {r: deploy[r] for r in sorted(keep)}


def check_port_free(params: HostParams) -> None:
    status, _ = probe(f"{engine.base_url(params.bind, params.port)}/", timeout=1.0)
    if status is not None:
        raise InstallError(f"port {params.port} on {params.bind} is already in use",
                           hint="stop what listens there, or choose another --port")


def check(st: host.InstallState, say: Event, alive: Callable[[], str | None], timeout: float | None = None,
          on_healthy: Callable[[], None] | None = None) -> SmokeResult:
    """Wait until the version answers its health URL, then one chat completion must work. ``alive`` says why
    the engine stopped (its container exited; ``systemctl is-failed``), which ends the wait early."""
    limit = timeout or float(st.extra.get("startPeriod") or DEFAULT_START_S)
    wait_healthy(st.health_url, timeout=limit, alive=alive, on_event=say)
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


def restore_outcome(record: Record, source: str | None, restored: bool) -> str:
    """After a failed switch was undone: does the version that was active before answer again?"""
    del record
    return (f"the previous version {source} is answering again" if restored
            else "nothing was installed before" if source is None
            else f"restoring {source} failed: see 'airpack status'")


def files_result(plan: Plan, state: host.InstallState, *, started: bool, new_key: str | None,
                 key_file: Path | None, files: Sequence[str] | None = None, endpoint: bool = True,
                 commands: Sequence[Sequence[str]] = (), alternatives: Sequence[Sequence[str]] = (),
                 smoke: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> InstallResult:
    """The result of a target that writes deploy files (the ``files`` document)."""
    return InstallResult(
        state=state, prefix=str(plan.prefix), started=started, served_name=plan.ctx.served_name,
        deploy_files=tuple(plan.deploy_files if files is None else files), deploy_diff=plan.diff,
        commands=tuple(tr.shell_line(c) for c in commands),
        alternatives=tuple(tr.shell_line(c) for c in alternatives), api_key=new_key,
        api_key_file=str(key_file) if key_file else None,
        endpoint=f"{engine.base_url(plan.params.bind, plan.params.port)}/v1" if endpoint else None,
        smoke=smoke, pruned=None, extra=extra or {})
