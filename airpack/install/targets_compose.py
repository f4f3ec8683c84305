"""``install --target compose``: the bundle's signed ``compose.yaml``, rendered for this host and brought up,
with the docker target's lifecycle (docs/lifecycle.md): one folder per version under ``versions/<id>/`` (its
weights and its rendered ``compose.yaml``), one Compose project per version, the record's ``pending`` journal,
the prefix lock and the audit log.

An upgrade copies the new version's weights and loads its images while the old project keeps answering, then
``docker-compose stop``s the old project (kept, not removed: the endpoint port stays the same), brings the new
one ``up`` and checks it (health, one chat completion). On failure the new project is taken ``down``, its folder
removed, and the old project started again and checked (exit 4). :mod:`airpack.install.lifecycle` calls
:func:`resume` and :func:`undo_new` for rollback and for undoing a switch that was killed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, HealthError, InstallError
from airpack.install import audit, engine, host, lifecycle, manage, versions
from airpack.install import targets_run as tr
from airpack.install.images import load_images, original_tags
from airpack.install.targets_common import (
    Event,
    Plan,
    TargetResult,
    audited_install,
    check_port_free,
    result,
)
from airpack.progress import Reporter

PROJECT_LABEL = "com.docker.compose.project"


def project_name(base: str, vid: str) -> str:
    """The Compose project of one version: ``<airpack-slug-8hex>-<version id, dashes>`` (lowercase)."""
    return f"{base}-{re.sub(r'[^a-z0-9]+', '-', vid.lower()).strip('-')}"


def compose_file(prefix: Path, vid: str) -> Path:
    return versions.version_dir(prefix, vid) / host.DEPLOY_DIR / "compose.yaml"


def _base(st: host.InstallState | None = None) -> list[str]:
    stored = st.extra.get("composeCommand") if st is not None else None
    if isinstance(stored, list) and stored:
        return [str(a) for a in stored]
    found = tr.compose_command()
    if found is None:
        raise InstallError("neither docker-compose nor 'docker compose' is installed",
                           hint="install Compose again to manage this prefix")
    return found


def _project(st: host.InstallState) -> str:
    return str(st.extra.get("composeProject") or st.container_name)


def compose_install(p: Plan, base: Sequence[str], client: Any, reporter: Reporter, say: Event) -> TargetResult:
    """Install or upgrade under the prefix lock; see the module docstring."""
    return audited_install(p, lambda: _install(p, list(base), client, reporter, say))


def _install(p: Plan, base: list[str], client: Any, reporter: Reporter, say: Event) -> TargetResult:
    m, v, prefix = p.verified.manifest, p.verified, p.prefix
    record, current = lifecycle.settle(prefix, m.name, client=client, say=say, target="compose")
    vid = versions.version_id(m.version, v.sums_sha256)
    project = project_name(tr.compose_project(p.ctx.slug, prefix), vid)
    file = compose_file(prefix, vid)
    cspec = engine.container_spec(p.ctx, p.params, image_id=p.image_id, digest=v.sums_sha256, name=project)
    if record is not None and record.active == vid and current is not None:
        return _recreate(p, base, client, record, current, say)
    host.check_upgrade(current, m.name, m.version, allow_downgrade=p.options.allow_downgrade)

    op = "install" if current is None else "upgrade"
    rec = record or versions.Record(name=m.name)
    rec = replace(rec, previous=None if rec.previous == vid else rec.previous,
                  extra={**rec.extra, "target": "compose", "composeBase": tr.compose_project(p.ctx.slug, prefix)})
    if (kept := versions.read_version(prefix, vid)) is not None:  # a kept copy of this very version: replaced
        down(prefix, vid, kept, client)
    rec_p = replace(rec, pending=versions.Pending(op, rec.active, vid, True, "copying", pid=os.getpid(),
                                                  started=versions.now()))
    versions.write_record(prefix, rec_p)
    cid = ""
    try:
        versions.stage(p.prefix, vid, p.verified, p.rendered, reporter)
        rec_p = versions.set_phase(prefix, rec_p, "loading")
        tags = [*load_images(v, client, reporter), *original_tags(v)]
        key_file, new_key = host.ensure_api_key(prefix) if p.options.api_key else (None, None)
        rec_p = versions.set_phase(prefix, rec_p, "stopping")
        if current is not None:
            say(f"stopping Compose project {_project(current)} (kept, to be started again if {m.version} fails)")
            stop(prefix, rec.active or "", current)
        check_port_free(p.params)
        rec_p = versions.set_phase(prefix, rec_p, "starting")
        say(f"starting Compose project {project}")
        tr.run(tr.compose_argv(base, file, project, "up", "-d", "--no-build"))
        cid = _one_container(base, file, project)
        url = engine.base_url(p.params.bind, p.params.port)
        state = host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target="compose", endpoint=f"{url}/v1", container_id=cid, container_name=project,
            image_id=p.image_id, image_tags=tuple(tags), bind=p.params.bind, port=p.params.port,
            network=p.params.network, api_key_file=str(key_file) if key_file else None, installed=versions.now(),
            health_url=url + cspec.health_path,
            extra={"prefix": str(prefix), "servedName": p.ctx.served_name, "versionId": vid,
                   "startPeriod": p.options.health_timeout or float(cspec.start_period_s),
                   "composeProject": project, "composeFile": str(file), "composeCommand": base})
        rec_p = versions.set_phase(prefix, rec_p, "health")
        smoke = lifecycle.check(client, state, cid, say)
    except BaseException as exc:  # noqa: BLE001 - undone, then re-raised (or turned into exit 4)
        raise _fail(client, prefix, rec_p, base, file, project, exc, p, say) from None
    state = replace(state, smoke=smoke.to_dict())
    versions.write_version(prefix, vid, state)
    lifecycle.commit(prefix, replace(rec, active=vid, previous=rec.active or rec.previous, pending=None))
    audit.append(prefix, audit.entry(op, name=m.name, version=m.version, digest=v.sums_sha256,
                                     key_fingerprint=v.key_fingerprint,
                                     previous=current.version if current else None))
    pruned = manage.prune(prefix, p.options.keep, client)
    extra = {"composeProject": project, "composeFile": str(prefix / host.DEPLOY_DIR / "compose.yaml"),
             "pruned": pruned, "composeVersionFile": str(file), "composeCommand": base, "versionId": vid,
             "previousVersion": current.version if current else None}
    files = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(p.rendered)]
    return result(p, files, started=True, new_key=new_key, key_file=key_file, smoke=smoke.to_dict(), extra=extra)


def _recreate(p: Plan, base: list[str], client: Any, record: versions.Record, current: host.InstallState,
              say: Event) -> TargetResult:
    """Installing the active version again: recreate its container from that version's files and check it."""
    prefix, vid = p.prefix, record.active or ""
    file, project = compose_file(prefix, vid), _project(current)
    say(f"recreating Compose project {project}")
    try:
        tr.run(tr.compose_argv(base, file, project, "up", "-d", "--no-build", "--force-recreate"))
        cid = _one_container(base, file, project)
        state = replace(current, container_id=cid)
        smoke = lifecycle.check(client, state, cid, say)
    except AirpackError as exc:
        logs = _logs(base, file, project)
        audit.append(prefix, audit.entry("install", name=current.name, version=current.version,
                                         digest=current.digest, key_fingerprint=current.key_fingerprint,
                                         outcome="failed", reason=f"recreated: {exc.message}"))
        raise HealthError(f"{exc.message}; the recreated Compose project {project} does not answer. "
                          f"Its last log lines:\n{logs}", hint="'airpack rollback' or install again") from None
    versions.write_version(prefix, vid, replace(state, smoke=smoke.to_dict()))
    lifecycle.commit(prefix, record)
    audit.append(prefix, audit.entry("install", name=current.name, version=current.version, digest=current.digest,
                                     key_fingerprint=current.key_fingerprint, reason="already active: recreated"))
    extra = {"composeProject": project, "composeFile": str(prefix / host.DEPLOY_DIR / "compose.yaml"),
             "composeVersionFile": str(file), "composeCommand": base, "versionId": vid, "previousVersion": None}
    files = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(p.rendered)]
    key_file = Path(current.api_key_file) if current.api_key_file else None
    return result(p, files, started=True, new_key=None, key_file=key_file, smoke=smoke.to_dict(), extra=extra)


def _fail(client: Any, prefix: Path, record: versions.Record, base: list[str], file: Path, project: str,
          exc: BaseException, p: Plan, say: Event) -> BaseException:
    """Undo a failed switch: the new project goes ``down`` with its folder, the old one answers again."""
    m, pend = p.verified.manifest, record.pending
    if pend is None:
        return exc
    logs = _logs(base, file, project) if isinstance(exc, HealthError) else ""
    undone = lifecycle.undo(client, prefix, record, say, log=False)
    restored = undone is not None and pend.source is not None and undone.active == pend.source
    outcome = (f"the previous version {pend.source} is answering again" if restored
               else "nothing was installed before" if pend.source is None
               else f"restoring {pend.source} failed: see 'airpack status'")
    if not isinstance(exc, HealthError):
        return exc
    reason = f"{exc.message}; the new Compose project was taken down; {outcome}; its last log lines:\n{logs}"
    audit.append(prefix, audit.entry(pend.op, name=m.name, version=m.version, digest=p.verified.sums_sha256,
                                     key_fingerprint=p.verified.key_fingerprint, outcome="failed", reason=reason))
    return HealthError(reason, hint="fix the cause and run install again")


def _one_container(base: Sequence[str], file: Path, project: str) -> str:
    ids = tr.run(tr.compose_argv(base, file, project, "ps", "-q")).stdout.split()
    if len(ids) != 1:
        raise InstallError(f"Compose project {project} runs {len(ids)} containers, expected one")
    return ids[0]


# ---- what the lifecycle (rollback, undo, uninstall) does with a compose version --------------------------


def stop(prefix: Path, vid: str, st: host.InstallState) -> None:
    """``docker-compose stop``: the container is kept (``restart: unless-stopped`` keeps it stopped)."""
    file = compose_file(prefix, vid)
    if file.is_file():
        tr.run(tr.compose_argv(_base(st), file, _project(st), "stop", "--timeout", "10"))


def resume(client: Any, prefix: Path, vid: str, st: host.InstallState, say: Event) -> host.InstallState:
    """Start a kept version's project again (``up -d`` recreates a removed container) and check it."""
    file, project = compose_file(prefix, vid), _project(st)
    if not file.is_file():
        raise InstallError(f"{file} is gone: {st.name} {st.version} cannot be started again",
                           hint="install that bundle again")
    versions.point_current(prefix, vid)
    say(f"starting Compose project {project} again")
    tr.run(tr.compose_argv(_base(st), file, project, "up", "-d", "--no-build"))
    cid = _one_container(_base(st), file, project)
    if cid != st.container_id:
        st = replace(st, container_id=cid)
        versions.write_version(prefix, vid, st)
    return lifecycle.record_smoke(prefix, vid, st, lifecycle.check(client, st, cid, say))


def down(prefix: Path, vid: str, st: host.InstallState | None, client: Any, project: str | None = None) -> list[str]:
    """``docker-compose down`` a version's project; containers left with its label are removed too."""
    project = project or (_project(st) if st is not None else None)
    if project is None:
        return []
    file = compose_file(prefix, vid)
    if file.is_file():
        with contextlib.suppress(InstallError):
            tr.run(tr.compose_argv(_base(st), file, project, "down", "--remove-orphans", "--timeout", "10"))
    left = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    for c in left:
        engine.remove(client, str(c.id))
    return [project]


def undo_new(client: Any, prefix: Path, record: versions.Record, vid: str) -> None:
    """Take down the project of a version a killed or failed switch was bringing up (no state.json yet)."""
    st = versions.read_version(prefix, vid)
    base = record.extra.get("composeBase")
    down(prefix, vid, st, client, project_name(str(base), vid) if base and st is None else None)


def _logs(base: Sequence[str], file: Path, project: str) -> str:
    lines: list[str] = []
    with contextlib.suppress(InstallError):
        out = tr.run(tr.compose_argv(base, file, project, "logs", "--no-color", "--tail", "20"))
        lines = [line.split("|", 1)[-1].strip() for line in out.stdout.splitlines() if line.strip()][-20:]
    return "\n".join(f"  | {line}" for line in lines) or "  | (no log output)"
