"""``install --target compose``: the bundle's signed ``compose.yaml``, rendered for this host and brought up,
with the lifecycle of every target (docs/lifecycle.md): one folder per version under ``versions/<id>/`` (its
weights and its rendered ``compose.yaml``), one Compose project per version, the record's ``pending`` journal,
the prefix lock and the audit log.

An upgrade copies the new version's weights and loads its images while the old project keeps answering, then
``docker-compose stop``s the old project (kept, not removed: the endpoint port stays the same), brings the new
one ``up`` and checks it (health, one chat completion). On failure the new project is taken ``down``, its folder
removed, and the old project started again and checked (exit 4).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, HealthError, InstallError
from airpack.install import audit, engine, host, versions
from airpack.install.doctor import DoctorReport
from airpack.install.images import load_images, original_tags
from airpack.install.results import InstallResult
from airpack.install.targets import commands as tr
from airpack.install.targets import common
from airpack.install.targets.base import Done, Plan, Removal
from airpack.install.targets.docker import (
    EngineContainer,
    containers_of,
    prefix_containers,
    remove_containers,
)
from airpack.install.versions import Pending, Record
from airpack.progress import Event, Reporter

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
    smoke = common.check(st, say, lambda: engine.exited(client, cid))
    return common.record_smoke(prefix, vid, st, smoke)


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


def undo_new(client: Any, prefix: Path, record: Record, vid: str) -> None:
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


class Compose(EngineContainer):
    name = "compose"
    local_engine = True
    container_engine = True
    journaled = True
    model_updates = False
    flags = frozenset({"--show-diff"})
    needs_registry = False

    def deploy_files(self, signed: Mapping[str, bytes]) -> dict[str, bytes]:
        return common.files_with(self.name, signed, ("compose.yaml", "ollama/"), "compose.yaml")

    def check_host(self) -> None:
        if tr.compose_command() is None:
            raise InstallError("neither docker-compose nor 'docker compose' is installed",
                               hint="install Compose, or use --target docker")

    def record_extra(self, plan: Plan) -> dict[str, Any]:
        return {"target": self.name, "composeBase": tr.compose_project(plan.ctx.slug, plan.prefix)}

    def record_fields(self, active: host.InstallState | None) -> dict[str, Any]:
        """The active version's project, for people."""
        return {"composeProject": active.extra.get("composeProject") if active else None}

    def _extra(self, plan: Plan, project: str, base: list[str], current: host.InstallState | None) -> dict[str, Any]:
        return {"composeProject": project, "composeFile": str(plan.prefix / host.DEPLOY_DIR / "compose.yaml"),
                "composeVersionFile": str(compose_file(plan.prefix, plan.vid)), "composeCommand": base,
                "versionId": plan.vid, "previousVersion": current.version if current else None}

    def again(self, plan: Plan, current: host.InstallState, client: Any, report: DoctorReport | None,
              say: Event) -> InstallResult | None:
        """Installing the active version again: recreate its container from that version's files, check it."""
        prefix, vid, base = plan.prefix, plan.vid, _base()
        file, project = compose_file(prefix, vid), _project(current)
        say(f"recreating Compose project {project}")
        try:
            tr.run(tr.compose_argv(base, file, project, "up", "-d", "--no-build", "--force-recreate"))
            cid = _one_container(base, file, project)
            state = replace(current, container_id=cid)
            smoke = common.check(state, say, lambda: engine.exited(client, cid))
        except AirpackError as exc:
            logs = _logs(base, file, project)
            audit.append(prefix, audit.entry("install", name=current.name, version=current.version,
                                             digest=current.digest, key_fingerprint=current.key_fingerprint,
                                             outcome="failed", reason=f"recreated: {exc.message}"))
            raise HealthError(f"{exc.message}; the recreated Compose project {project} does not answer. "
                              f"Its last log lines:\n{logs}", hint="'airpack rollback' or install again") from None
        state = common.record_smoke(prefix, vid, state, smoke)
        audit.append(prefix, audit.entry("install", name=current.name, version=current.version, digest=current.digest,
                                         key_fingerprint=current.key_fingerprint, reason="already active: recreated"))
        key_file = Path(current.api_key_file) if current.api_key_file else None
        return common.files_result(plan, state, started=True, new_key=None, key_file=key_file,
                                   smoke=smoke.to_dict(), extra=self._extra(plan, project, base, None))

    def clear(self, plan: Plan, client: Any) -> None:
        if (kept := versions.read_version(plan.prefix, plan.vid)) is not None:  # a kept copy of this very version
            down(plan.prefix, plan.vid, kept, client)

    def stage(self, plan: Plan, current: host.InstallState | None, client: Any, reporter: Reporter,
              phase: Callable[[str], None]) -> list[str]:
        versions.stage(plan.prefix, plan.vid, plan.verified, plan.rendered, reporter)
        phase("loading")
        return [*load_images(plan.verified, client, reporter), *original_tags(plan.verified)]

    def start(self, plan: Plan, tags: list[str], key_file: Path | None, client: Any,
              current: host.InstallState | None, say: Event) -> host.InstallState:
        m, v, prefix, base = plan.verified.manifest, plan.verified, plan.prefix, _base()
        project = project_name(tr.compose_project(plan.ctx.slug, prefix), plan.vid)
        file = compose_file(prefix, plan.vid)
        cspec = engine.container_spec(plan.ctx, plan.params, image_id=plan.image_id, digest=v.sums_sha256,
                                      name=project)
        common.check_port_free(plan.params)
        say(f"starting Compose project {project}")
        tr.run(tr.compose_argv(base, file, project, "up", "-d", "--no-build"))
        cid = _one_container(base, file, project)
        url = engine.base_url(plan.params.bind, plan.params.port)
        return host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target=self.name, endpoint=f"{url}/v1", container_id=cid, container_name=project,
            image_id=plan.image_id, image_tags=tuple(tags), bind=plan.params.bind, port=plan.params.port,
            network=plan.params.network, api_key_file=str(key_file) if key_file else None,
            installed=versions.now(), health_url=url + cspec.health_path,
            extra={"prefix": str(prefix), "servedName": plan.ctx.served_name, "versionId": plan.vid,
                   "startPeriod": plan.health_timeout or float(cspec.start_period_s),
                   "composeProject": project, "composeFile": str(file), "composeCommand": base})

    def result(self, done: Done) -> InstallResult:
        st = done.state
        return common.files_result(done.plan, st, started=True, new_key=done.new_key, key_file=done.key_file,
                                   smoke=done.smoke.to_dict() if done.smoke else None,
                                   extra=self._extra(done.plan, _project(st), _base(st), done.current))

    def last_logs(self, client: Any, st: host.InstallState) -> str:
        return _logs(_base(st), Path(str(st.extra.get("composeFile"))), _project(st))

    def failed_switch(self, message: str, logs: str, outcome: str) -> tuple[str, str]:
        reason = f"{message}; the new Compose project was taken down; {outcome}; its last log lines:\n{logs}"
        return reason, reason

    def restore_outcome(self, record: Record, source: str | None, restored: bool) -> str:
        return common.restore_outcome(record, source, restored)

    # ---- the lifecycle of installed versions -------------------------------------------------------------
    def lifecycle_client(self, client: Any) -> Any:
        return engine.connect(client)

    def stop(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> None:
        stop(prefix, vid, st)

    def resume(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> host.InstallState:
        return resume(client, prefix, vid, st, say)

    def undo_new(self, prefix: Path, record: Record, pending: Pending, client: Any) -> None:
        undo_new(client, prefix, record, pending.target)

    def remove(self, prefix: Path, vid: str, st: host.InstallState, client: Any) -> Removal:
        projects = down(prefix, vid, st, client)
        removed = sorted(c for c in {st.container_id, *containers_of(client, prefix, vid)} if engine.remove(client, c))
        return Removal(containers=tuple(removed), projects=tuple(projects))

    def remove_all(self, prefix: Path, record: Record | None, states: dict[str, host.InstallState],
                   client: Any) -> Removal:
        found = prefix_containers(prefix, record, client)
        projects = [p for vid, st in states.items() for p in down(prefix, vid, st, client)]
        removed = remove_containers(found, states, client)
        return Removal(containers=tuple(removed), projects=tuple(projects), audit={"containersRemoved": len(removed)})
