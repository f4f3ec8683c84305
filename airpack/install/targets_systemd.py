"""``install --target systemd`` with the docker target's lifecycle (docs/lifecycle.md): one folder per version
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
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, HealthError, InstallError
from airpack.install import audit, engine, host, lifecycle, manage, versions
from airpack.install import targets_run as tr
from airpack.install.health import probe
from airpack.install.images import load_images, original_tags
from airpack.install.targets_common import Event, Plan, TargetResult, audited_install, check_port_free, result
from airpack.progress import Reporter

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


def systemd_install(p: Plan, client: Any, reporter: Reporter, say: Event) -> TargetResult:
    """Install or upgrade under the prefix lock; see the module docstring."""
    return audited_install(p, lambda: _install(p, client, reporter, say))


def _install(p: Plan, client: Any, reporter: Reporter, say: Event) -> TargetResult:
    m, v, prefix = p.verified.manifest, p.verified, p.prefix
    live = running()
    record, current = lifecycle.settle(prefix, m.name, client=client, say=say, target="systemd")
    adopted = record is None and _adopt_unrecorded(prefix, say)
    vid = versions.version_id(m.version, v.sums_sha256)
    unit = unit_name(p.ctx.slug)
    file, quadlet = unit_file(prefix, vid, unit), quadlet_file(prefix, vid, unit)
    if record is not None and record.active == vid and current is not None:
        return _again(p, record, current, live, say)
    host.check_upgrade(current, m.name, m.version, allow_downgrade=p.options.allow_downgrade)

    op = "install" if current is None else "upgrade"
    rec = record or versions.Record(name=m.name)
    rec = replace(rec, previous=None if rec.previous == vid else rec.previous,
                  extra={**rec.extra, "target": "systemd", "unit": unit})
    rec_p = replace(rec, pending=versions.Pending(op, rec.active, vid, True, "copying", pid=os.getpid(),
                                                  started=versions.now()))
    versions.write_record(prefix, rec_p)
    cspec = engine.container_spec(p.ctx, p.params, image_id=p.image_id, digest=v.sums_sha256,
                                  name=f"airpack-{p.ctx.slug}")
    try:
        versions.stage(p.prefix, vid, p.verified, p.rendered, reporter)
        rec_p = versions.set_phase(prefix, rec_p, "loading")
        tags = [*load_images(v, client, reporter), *original_tags(v)]
        key_file, new_key = host.ensure_api_key(prefix) if p.options.api_key else (None, None)
        url = engine.base_url(p.params.bind, p.params.port)
        state = host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target="systemd", endpoint=f"{url}/v1", container_id=cspec.name, container_name=cspec.name,
            image_id=p.image_id, image_tags=tuple(tags), bind=p.params.bind, port=p.params.port,
            network=p.params.network, api_key_file=str(key_file) if key_file else None,
            installed=versions.now(), health_url=url + cspec.health_path,
            extra={"prefix": str(prefix), "servedName": p.ctx.served_name, "versionId": vid, "unit": unit,
                   "unitFile": str(file), "quadletFile": str(quadlet), "started": live,
                   "startPeriod": p.options.health_timeout or float(cspec.start_period_s)})
        smoke = None
        if live:
            rec_p = versions.set_phase(prefix, rec_p, "stopping")
            if current is not None:
                say(f"stopping {unit} ({current.version}; its unit file is put back if {m.version} fails)")
                tr.run(["systemctl", "stop", unit])
            check_port_free(p.params)
            rec_p = versions.set_phase(prefix, rec_p, "starting")
            switch(file, first=current is None and not adopted, say=say)
            rec_p = versions.set_phase(prefix, rec_p, "health")
            smoke = check(state, say).to_dict()
            state = replace(state, smoke=smoke)
    except BaseException as exc:  # noqa: BLE001 - undone, then re-raised (or turned into exit 4)
        raise _fail(prefix, rec_p, exc, p, say) from None
    versions.write_version(prefix, vid, state)
    lifecycle.commit(prefix, replace(rec, active=vid, previous=rec.active or rec.previous, pending=None))
    audit.append(prefix, audit.entry(op, name=m.name, version=m.version, digest=v.sums_sha256,
                                     key_fingerprint=v.key_fingerprint, started=live,
                                     previous=current.version if current else None))
    pruned = manage.prune(prefix, p.options.keep, client)
    first = current is None and not adopted
    commands = [] if live else (tr.systemd_commands(file) if first else tr.systemd_switch_commands(file))
    alternatives = [] if live else (tr.quadlet_commands(quadlet) if first else tr.quadlet_switch_commands(quadlet))
    files = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(p.rendered)]
    return result(p, files, started=live, new_key=new_key, key_file=key_file, smoke=smoke, commands=commands,
                  alternatives=alternatives,
                  extra={"unit": unit, "unitFile": str(file), "versionId": vid, "pruned": pruned,
                         "previousVersion": current.version if current else None})


def _adopt_unrecorded(prefix: Path, say: Event) -> bool:
    """An older airpack wrote a systemd install without a record when systemd was not PID 1: ``model/`` and
    ``deploy/systemd/`` at the top of the prefix. Its files are replaced by this install (as the older airpack
    did on a reinstall), so ``model`` and ``deploy`` can lead to the active version; True when there were some."""
    real = [prefix / n for n in versions.LINKS if (prefix / n).is_dir() and not (prefix / n).is_symlink()]
    if not real:
        return False
    if not (prefix / host.DEPLOY_DIR / SYSTEMD_DIR).is_dir():
        raise InstallError(f"{prefix} holds {', '.join(d.name + '/' for d in real)} that no install record names",
                           hint="move them aside, or choose another --prefix")
    say("replacing the files of a single-version systemd install (no record; written by an older airpack)")
    for d in real:
        shutil.rmtree(d)
    return True


def _again(p: Plan, record: versions.Record, current: host.InstallState, live: bool, say: Event) -> TargetResult:
    """Installing the active version again: nothing changes; without systemd the commands are given again, with
    it a unit that does not answer is switched to this version's file, restarted and checked."""
    prefix, vid = p.prefix, record.active or ""
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
    audit.append(prefix, audit.entry("install", name=current.name, version=current.version, digest=current.digest,
                                     key_fingerprint=current.key_fingerprint, reason="already active"))
    key_file = Path(current.api_key_file) if current.api_key_file else None
    files = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(p.rendered)]
    return result(p, files, started=live, new_key=None, key_file=key_file, smoke=smoke if live else None,
                  commands=[] if live else tr.systemd_switch_commands(file),
                  alternatives=[] if live else tr.quadlet_switch_commands(quadlet),
                  extra={"unit": unit, "unitFile": str(file), "versionId": vid, "pruned": [],
                         "previousVersion": None})


def _fail(prefix: Path, record: versions.Record, exc: BaseException, p: Plan, say: Event) -> BaseException:
    """Undo a failed switch: the new version's folder goes, the unit runs the old version's file again."""
    m, pend = p.verified.manifest, record.pending
    if pend is None:
        return exc
    unit = str(record.extra.get("unit"))
    reason = (f"{exc.message}; its last journal lines: {_journal(unit)}" if isinstance(exc, HealthError)
              else str(exc))
    undone = lifecycle.undo(None, prefix, record, say, log=False)
    restored = undone is not None and pend.source is not None and undone.active == pend.source
    outcome = (f"{unit} runs the previous version {pend.source} again and it answers" if restored and running()
               else f"the previous version {pend.source} is active again" if restored
               else f"{unit} was stopped and disabled" if pend.source is None
               else f"restoring {pend.source} failed: see 'airpack status'")
    if not isinstance(exc, HealthError):
        return exc
    audit.append(prefix, audit.entry(pend.op, name=m.name, version=m.version, digest=p.verified.sums_sha256,
                                     key_fingerprint=p.verified.key_fingerprint, outcome="failed",
                                     reason=f"{reason}; {outcome}"))
    return HealthError(f"{reason}; {outcome}", hint="fix the cause and run install again")


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


def check(st: host.InstallState, say: Event) -> Any:
    """Health and one chat completion; the unit failing (systemd gave up on it) ends the wait early."""
    unit = _unit(st)
    return lifecycle.check(None, st, st.container_id, say, alive=lambda: tr.unit_failed(unit))


# ---- what the lifecycle (rollback, undo, uninstall) does with a systemd version --------------------------


def stop(st: host.InstallState) -> None:
    """Stop the unit (where systemd runs); the version's files stay, to be switched back to."""
    if running():
        tr.run(["systemctl", "stop", _unit(st)])


def resume(prefix: Path, vid: str, st: host.InstallState, say: Event) -> host.InstallState:
    """Make ``vid`` the version the unit runs: ``current`` first (a migrated single-version unit mounts
    ``<prefix>/model``, which leads through it), then, where systemd runs, its unit file, a restart and the
    checks. Without systemd only the link moves; the caller returns the commands."""
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


def undo_new(record: versions.Record, pending: versions.Pending) -> None:
    """A killed or failed first install leaves no version to switch back to: stop and disable the unit (where
    systemd runs). With a previous version, :func:`resume` installs its unit file again instead."""
    unit = record.extra.get("unit")
    if pending.source is None and unit and running():
        for argv in tr.systemd_remove_commands(str(unit)):
            with contextlib.suppress(InstallError):
                tr.run(argv)


def rollback_files(prefix: Path, record: versions.Record, say: Event) -> dict[str, Any]:
    """Rollback where systemd is not PID 1: the record is swapped (it names the version whose unit file should
    be installed), ``current`` moves, and the commands that switch the unit are returned, not run."""
    rb = versions.rollback_pair(prefix, record)
    record, active, target = rb.record, rb.active, rb.target
    unit = _unit(target)
    file, quadlet = unit_file(prefix, rb.previous_id, unit), quadlet_file(prefix, rb.previous_id, unit)
    if not file.is_file():
        raise InstallError(f"{file} is gone: {target.name} {target.version} cannot be switched to",
                           hint="install that bundle again")
    commands, alternatives = tr.systemd_switch_commands(file), tr.quadlet_switch_commands(quadlet)
    lifecycle.commit(prefix, replace(record, active=rb.previous_id, previous=rb.active_id, pending=None))
    say(f"{record.name}: {target.version} is the active version now; the unit is switched by the commands")
    audit.append(prefix, audit.entry("rollback", name=target.name, version=target.version, digest=target.digest,
                                     key_fingerprint=target.key_fingerprint, previous=active.version,
                                     started=False))
    return {"prefix": str(prefix), "name": target.name, "version": target.version,
            "previousVersion": active.version, "endpoint": target.endpoint, "containerName": target.container_name,
            "target": "systemd", "started": False, "unit": unit,
            "commands": [tr.shell_line(c) for c in commands],
            "alternativeCommands": [tr.shell_line(c) for c in alternatives]}


def remove_commands(record: versions.Record, states: dict[str, host.InstallState]) -> tuple[list[list[str]],
                                                                                              list[list[str]]]:
    """What takes the unit away (``uninstall --all``): disable and stop it, remove its file; and the quadlet's."""
    unit = record.extra.get("unit") or next((_unit(st) for st in states.values()), None)
    if not unit:
        return [], []
    return tr.systemd_remove_commands(str(unit)), tr.quadlet_remove_commands(str(unit))
