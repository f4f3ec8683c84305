"""``install --target systemd`` with the lifecycle of every target (docs/lifecycle.md): one folder per version
under ``versions/<id>/`` (its weights and its own rendered units), the record's ``pending`` journal, the prefix
lock and the audit log.

There is one unit, ``airpack-<slug>.service`` (its container is ``airpack-<slug>``), and each version has its
own copy of it in ``versions/<id>/deploy/systemd/``, whose bind mount names **that version's** ``model/``
folder. Switching versions (upgrade, rollback, undo) installs the other version's unit file over the unit and
restarts it. The unit never mounts ``current``: a ``Restart=on-failure`` (or a reboot) between moving the link
and switching the unit would start the old version's image and arguments on the new version's weights.

Where PID 1 is systemd the switch runs here: stop the unit, install the new file, ``daemon-reload``,
``restart``, health and one chat completion; on failure the old version's file goes back and the unit is
restarted and checked (exit 4). Elsewhere nothing runs: the files, the record and the ``current`` link are
written and the commands that switch the unit are returned (``started: false``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, HealthError, InstallError
from airpack.install import audit, engine, host, versions
from airpack.install.doctor import DoctorReport
from airpack.install.health import SmokeResult, probe
from airpack.install.images import load_images, original_tags
from airpack.install.results import InstallResult, RollbackResult
from airpack.install.targets import commands as tr
from airpack.install.targets import common
from airpack.install.targets.base import Done, Plan, Removal
from airpack.install.versions import Pending, Record, Rollback
from airpack.progress import Event, Reporter

SYSTEMD_DIR = "systemd"


def running() -> bool:
    """Whether units can be started here (PID 1 is systemd and ``systemctl`` exists)."""
    return tr.systemd_running()


def unit_name(slug: str) -> str:
    return f"airpack-{slug}.service"


def unit_file(prefix: Path, vid: str, unit: str) -> Path:
    """The docker-run unit of one version (its bind mount names ``versions/<id>/model``)."""
    return versions.version_dir(prefix, vid) / host.DEPLOY_DIR / SYSTEMD_DIR / unit


def quadlet_file(prefix: Path, vid: str, unit: str) -> Path:
    return unit_file(prefix, vid, unit).with_suffix(".container")


def _unit(st: host.InstallState) -> str:
    return str(st.extra.get("unit") or f"{st.container_name}.service")


def _journal(unit: str) -> str:
    return " | ".join(tr.journal_tail(unit)) or "(no journal output)"  # one line: messages are escaped


def failure(st: host.InstallState, exc: AirpackError) -> str:
    """The reason plus the unit's last journal lines."""
    return f"{exc.message}; its last journal lines: {_journal(_unit(st))}"


def switch(file: Path, *, first: bool, say: Event) -> None:
    """Make the unit run the version whose unit file is ``file`` (systemd is PID 1 here)."""
    for argv in tr.systemd_commands(file) if first else tr.systemd_switch_commands(file):
        say(tr.shell_line(argv))
        tr.run(argv)


def check(st: host.InstallState, say: Event) -> SmokeResult:
    """Health and one chat completion; the unit failing (systemd gave up on it) ends the wait early."""
    unit = _unit(st)
    return common.check(st, say, lambda: tr.unit_failed(unit))


# ---- what the lifecycle (rollback, undo, uninstall) does with a systemd version --------------------------


def stop(st: host.InstallState) -> None:
    """Stop the unit (where systemd runs); the version's files stay, to be switched back to."""
    if running():
        tr.run(["systemctl", "stop", _unit(st)])


def resume(prefix: Path, vid: str, st: host.InstallState, say: Event) -> host.InstallState:
    """Make ``vid`` the version the unit runs: ``current`` first, then, where systemd runs, its unit file, a
    restart and the checks. Without systemd only the link moves; the caller returns the commands."""
    file = unit_file(prefix, vid, _unit(st))
    if not file.is_file():
        raise InstallError(f"{file} is gone: {st.name} {st.version} cannot be started again",
                           hint="install that bundle again")
    versions.point_current(prefix, vid)
    if not running():
        return st
    say(f"switching {_unit(st)} to {st.version}")
    switch(file, first=False, say=say)
    smoke = check(st, say)
    st = replace(st, smoke={**smoke.to_dict(), "at": versions.now()}, extra={**st.extra, "started": True})
    versions.write_version(prefix, vid, st)
    return st


def undo_new(record: Record, pending: Pending) -> None:
    """A killed or failed first install leaves no version to switch back to: stop and disable the unit (where
    systemd runs). With a previous version, :func:`resume` installs its unit file again instead."""
    unit = record.extra.get("unit")
    if pending.source is None and unit and running():
        for argv in tr.systemd_remove_commands(str(unit)):
            with contextlib.suppress(InstallError):
                tr.run(argv)


def remove_commands(record: Record, states: dict[str, host.InstallState]) -> tuple[list[list[str]],
                                                                                              list[list[str]]]:
    """What takes the unit away (``uninstall --all``): disable and stop it, remove its file; and the quadlet's."""
    unit = record.extra.get("unit") or next((_unit(st) for st in states.values()), None)
    if not unit:
        return [], []
    return tr.systemd_remove_commands(str(unit)), tr.quadlet_remove_commands(str(unit))


class Systemd:
    name = "systemd"
    local_engine = True
    container_engine = False
    journaled = True
    model_updates = False
    flags = frozenset({"--show-diff"})
    needs_registry = False

    def deploy_files(self, signed: Mapping[str, bytes]) -> dict[str, bytes]:
        return common.files_with(self.name, signed, ("systemd/", "ollama/"), "systemd/")

    def check_host(self) -> None:
        return None

    def record_extra(self, plan: Plan) -> dict[str, Any]:
        return {"target": self.name, "unit": unit_name(plan.ctx.slug)}

    def record_fields(self, active: host.InstallState | None) -> dict[str, Any]:
        return {}

    def again(self, plan: Plan, current: host.InstallState, client: Any, report: DoctorReport | None,
              say: Event) -> InstallResult | None:
        """Installing the active version again: nothing changes; without systemd the commands are given again,
        with it a unit that does not answer is switched to this version's file, restarted and checked."""
        prefix, vid, live = plan.prefix, plan.vid, running()
        unit = _unit(current)
        file, quadlet = unit_file(prefix, vid, unit), quadlet_file(prefix, vid, unit)
        smoke = current.smoke
        if live and probe(current.health_url)[0] != 200:
            try:
                current = resume(prefix, vid, current, say)
            except AirpackError as exc:
                audit.append(prefix, audit.entry("install", name=current.name, version=current.version,
                                                 digest=current.digest, key_fingerprint=current.key_fingerprint,
                                                 outcome="failed", reason=f"restarted: {exc.message}"))
                raise HealthError(failure(current, exc), hint="'airpack rollback' or install again") from None
        audit.append(prefix, audit.entry("install", name=current.name, version=current.version,
                                         digest=current.digest, key_fingerprint=current.key_fingerprint,
                                         reason="already active"))
        key_file = Path(current.api_key_file) if current.api_key_file else None
        return replace(common.files_result(
            plan, current, started=live, new_key=None, key_file=key_file, smoke=smoke if live else None,
            commands=[] if live else tr.systemd_switch_commands(file),
            alternatives=[] if live else tr.quadlet_switch_commands(quadlet),
            extra={"unit": unit, "unitFile": str(file), "versionId": vid, "previousVersion": None}), pruned=())

    def clear(self, plan: Plan, client: Any) -> None:
        return None

    def stage(self, plan: Plan, current: host.InstallState | None, client: Any, reporter: Reporter,
              phase: Callable[[str], None]) -> list[str]:
        versions.stage(plan.prefix, plan.vid, plan.verified, plan.rendered, reporter)
        phase("loading")
        return [*load_images(plan.verified, client, reporter), *original_tags(plan.verified)]

    def start(self, plan: Plan, tags: list[str], key_file: Path | None, client: Any,
              current: host.InstallState | None, say: Event) -> host.InstallState:
        """Where systemd runs: the new version's unit file over the unit, restarted; elsewhere nothing starts."""
        m, v, prefix, live = plan.verified.manifest, plan.verified, plan.prefix, running()
        unit = unit_name(plan.ctx.slug)
        file, quadlet = unit_file(prefix, plan.vid, unit), quadlet_file(prefix, plan.vid, unit)
        cspec = engine.container_spec(plan.ctx, plan.params, image_id=plan.image_id, digest=v.sums_sha256,
                                      name=f"airpack-{plan.ctx.slug}")
        url = engine.base_url(plan.params.bind, plan.params.port)
        if live:
            common.check_port_free(plan.params)
            switch(file, first=current is None, say=say)
        return host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target=self.name, endpoint=f"{url}/v1", container_id=cspec.name, container_name=cspec.name,
            image_id=plan.image_id, image_tags=tuple(tags), bind=plan.params.bind, port=plan.params.port,
            network=plan.params.network, api_key_file=str(key_file) if key_file else None,
            installed=versions.now(), health_url=url + cspec.health_path,
            extra={"prefix": str(prefix), "servedName": plan.ctx.served_name, "versionId": plan.vid, "unit": unit,
                   "unitFile": str(file), "quadletFile": str(quadlet), "started": live,
                   "startPeriod": plan.health_timeout or float(cspec.start_period_s)})

    def check(self, st: host.InstallState, client: Any, say: Event,
              on_healthy: Callable[[], None] | None = None) -> SmokeResult | None:
        return check(st, say) if st.extra.get("started") else None

    def finish(self, plan: Plan, st: host.InstallState) -> host.InstallState:
        return st

    def audit_fields(self, st: host.InstallState) -> dict[str, Any]:
        return {"started": bool(st.extra.get("started"))}

    def result(self, done: Done) -> InstallResult:
        st, first, live = done.state, done.current is None, bool(done.state.extra.get("started"))
        file, quadlet = Path(str(st.extra["unitFile"])), Path(str(st.extra["quadletFile"]))
        commands = [] if live else (tr.systemd_commands(file) if first else tr.systemd_switch_commands(file))
        alternatives = [] if live else (tr.quadlet_commands(quadlet) if first else tr.quadlet_switch_commands(quadlet))
        return common.files_result(done.plan, st, started=live, new_key=done.new_key, key_file=done.key_file,
                                   smoke=done.smoke.to_dict() if done.smoke else None, commands=commands,
                                   alternatives=alternatives,
                                   extra={"unit": _unit(st), "unitFile": str(file), "versionId": done.plan.vid,
                                          "previousVersion": done.current.version if done.current else None})

    def last_logs(self, client: Any, st: host.InstallState) -> str:
        return _journal(_unit(st))

    def failed_switch(self, message: str, logs: str, outcome: str) -> tuple[str, str]:
        text = f"{message}; its last journal lines: {logs}; {outcome}"
        return text, text

    def restore_outcome(self, record: Record, source: str | None, restored: bool) -> str:
        unit = str(record.extra.get("unit"))
        return (f"{unit} runs the previous version {source} again and it answers" if restored and running()
                else f"the previous version {source} is active again" if restored
                else f"{unit} was stopped and disabled" if source is None
                else f"restoring {source} failed: see 'airpack status'")

    # ---- the lifecycle of installed versions -------------------------------------------------------------
    def lifecycle_client(self, client: Any) -> Any:
        return client  # the unit runs the engine: rollback, status and uninstall work without Docker

    def stop(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> None:
        stop(st)

    def resume(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> host.InstallState:
        return resume(prefix, vid, st, say)

    def undo_new(self, prefix: Path, record: Record, pending: Pending, client: Any) -> None:
        undo_new(record, pending)

    def failure(self, client: Any, st: host.InstallState, exc: AirpackError) -> str:
        return failure(st, exc)

    def switches_here(self) -> bool:
        return running()

    def rollback_elsewhere(self, prefix: Path, rb: Rollback, say: Event) -> tuple[RollbackResult, dict[str, Any]]:
        """Where systemd is not PID 1: the record is swapped (it names the version whose unit file should be
        installed), ``current`` moves, and the commands that switch the unit are returned, not run."""
        active, target = rb.active, rb.target
        unit = _unit(target)
        file, quadlet = unit_file(prefix, rb.previous_id, unit), quadlet_file(prefix, rb.previous_id, unit)
        if not file.is_file():
            raise InstallError(f"{file} is gone: {target.name} {target.version} cannot be switched to",
                               hint="install that bundle again")
        say(f"{rb.record.name}: {target.version} is the active version now; the unit is switched by the commands")
        return RollbackResult(
            prefix=str(prefix), name=target.name, version=target.version, previous_version=active.version,
            endpoint=target.endpoint, container_name=target.container_name, target=self.name, started=False,
            unit=unit, commands=tuple(tr.shell_line(c) for c in tr.systemd_switch_commands(file)),
            alternatives=tuple(tr.shell_line(c) for c in tr.quadlet_switch_commands(quadlet))), {"started": False}

    def remove(self, prefix: Path, vid: str, st: host.InstallState, client: Any) -> Removal:
        return Removal()  # one unit runs the active version: another version is files only

    def remove_all(self, prefix: Path, record: Record | None, states: dict[str, host.InstallState],
                   client: Any) -> Removal:
        """Disable the unit and remove its file where systemd runs (a unit that was never installed cannot be
        disabled: its files still go), else return the commands."""
        commands, alternatives = remove_commands(record, states) if record is not None else ([], [])
        here = running()
        errors: list[str] = []
        for argv in commands if here else ():
            try:
                tr.run(argv)
            except InstallError as exc:
                errors.append(exc.message)
        lines = tuple(tr.shell_line(c) for c in commands)
        return Removal(ran=lines if here else (), commands=() if here else lines,
                       alternatives=() if here else tuple(tr.shell_line(c) for c in alternatives),
                       errors=tuple(errors), target=self.name, audit={"ran": bool(commands) and here})
