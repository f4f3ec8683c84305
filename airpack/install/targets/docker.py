"""``install --target docker`` (the default): airpack starts the engine container itself, through the Docker
API, one container per version (``<airpack-slug-8hex>-<version id>``, labelled with the prefix and the version
id). A switch stops the old container (kept: its restart policy is ``unless-stopped``), starts the new one on
the same port and checks it; a container someone removed is recreated from the spec stored in the version's
``state.json``. The docker target takes model updates (a model-only bundle runs on the active runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from airpack.errors import AirpackError, InstallError
from airpack.install import audit, engine, host, model_update, versions
from airpack.install.doctor import DoctorReport
from airpack.install.health import SmokeResult, probe
from airpack.install.images import load_images, original_tags
from airpack.install.results import InstallResult, RollbackResult
from airpack.install.targets import common
from airpack.install.targets.base import Done, Plan, Removal
from airpack.install.versions import Pending, Record, Rollback
from airpack.progress import Event, Reporter

LABEL_VERSION_ID = "io.airpack.version-id"


def spec_to_dict(spec: engine.ContainerSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_dict(d: dict[str, Any]) -> engine.ContainerSpec:
    """The stored container spec (lists back to tuples), to recreate a container someone removed."""
    def tup(v: Any) -> Any:
        return tuple(tup(x) for x in v) if isinstance(v, list) else v

    return engine.ContainerSpec(**{k: tup(v) for k, v in d.items()})


def stop_container(client: Any, ref: str) -> bool:
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


def log_tail(client: Any, container_id: str) -> str:
    """The container's last log lines on one line (error messages escape control characters, breaks too)."""
    return " | ".join(engine.last_logs(client, container_id)) if container_id else ""


def with_logs(message: str, logs: str) -> str:
    return message + (f"; its last log lines: {logs}" if logs else "")


def prefix_containers(prefix: Path, record: Record | None, client: Any) -> set[str]:
    """Every container airpack started for ``prefix`` (by its label); InstallError when there is nothing."""
    found = set(engine.containers_for(client, str(prefix)))
    if record is None and not found:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE}, no container)")
    return found


def remove_containers(found: set[str], states: dict[str, host.InstallState], client: Any) -> list[str]:
    """Remove ``found`` and every container the versions' states name; the ones that were there."""
    return [c for c in sorted(found | {st.container_id for st in states.values()}) if engine.remove(client, c)]


class EngineContainer:
    """What a target whose version runs as a container of the local engine (docker, compose) shares: health +
    smoke while the container is alive, its log tail on a failure, the switch made on this host; nothing to
    finish, nothing to add to the audit line."""

    name: str

    def check(self, st: host.InstallState, client: Any, say: Event,
              on_healthy: Callable[[], None] | None = None) -> SmokeResult | None:
        return common.check(st, say, lambda: engine.exited(client, st.container_id), on_healthy=on_healthy)

    def finish(self, plan: Plan, st: host.InstallState) -> host.InstallState:
        return st

    def audit_fields(self, st: host.InstallState) -> dict[str, Any]:
        return {}

    def failure(self, client: Any, st: host.InstallState, exc: AirpackError) -> str:
        return with_logs(exc.message, log_tail(client, st.container_id))

    def switches_here(self) -> bool:
        return True

    def rollback_elsewhere(self, prefix: Path, rb: Rollback, say: Event) -> tuple[RollbackResult, dict[str, Any]]:
        raise InstallError(f"internal: the {self.name} target switches versions on this host")


class Docker(EngineContainer):
    name = "docker"
    local_engine = True
    container_engine = True
    journaled = True
    model_updates = True
    flags: frozenset[str] = frozenset()
    needs_registry = False

    def deploy_files(self, signed: Mapping[str, bytes]) -> dict[str, bytes]:
        return {rel: data for rel, data in signed.items() if not rel.startswith("kubernetes/")}

    def check_host(self) -> None:
        return None

    def record_extra(self, plan: Plan) -> dict[str, Any]:
        return {}

    def record_fields(self, active: host.InstallState | None) -> dict[str, Any]:
        return {}

    def _spec(self, plan: Plan) -> engine.ContainerSpec:
        name = f"{engine.container_name(plan.ctx.slug, plan.prefix)}-{plan.vid}"
        cspec = engine.container_spec(plan.ctx, plan.params, image_id=plan.image_id,
                                      digest=plan.verified.sums_sha256, name=name)
        labels = dict(cspec.labels) | {engine.LABEL_PREFIX: str(plan.prefix), LABEL_VERSION_ID: plan.vid}
        return replace(cspec, labels=tuple(labels.items()))

    def again(self, plan: Plan, current: host.InstallState, client: Any, report: DoctorReport | None,
              say: Event) -> InstallResult | None:
        """A rerun of an install that completed: nothing to install while it answers (a rerun is idempotent),
        but the smoke test runs again and is the one reported (exit 4 when it fails now)."""
        code, body = probe(current.health_url)
        if code != 200:
            raise InstallError(f"{current.name} {current.version} is the active version here but does not answer "
                               f"({code or body})", hint="'airpack rollback', or 'airpack uninstall' and install again")
        smoke = self.check(current, client, say)
        assert smoke is not None  # noqa: S101 - the docker target always checks
        current = common.record_smoke(plan.prefix, plan.vid, current, smoke)
        audit.append(plan.prefix, audit.entry("install", name=current.name, version=current.version,
                                              digest=current.digest, key_fingerprint=current.key_fingerprint,
                                              reason="already active"))
        return self._result(plan, current, None, report, {})

    def clear(self, plan: Plan, client: Any) -> None:
        for cid in containers_of(client, plan.prefix, plan.vid):  # a kept copy of this very version: replaced
            engine.remove(client, cid)

    def stage(self, plan: Plan, current: host.InstallState | None, client: Any, reporter: Reporter,
              phase: Callable[[str], None]) -> list[str]:
        versions.stage(plan.prefix, plan.vid, plan.verified, plan.rendered, reporter)
        phase("loading")
        if plan.runtime.update_of is not None:  # a model update: the runtime's images are here
            return list(current.image_tags if current else ())
        return [*load_images(plan.verified, client, reporter), *original_tags(plan.verified)]

    def start(self, plan: Plan, tags: list[str], key_file: Path | None, client: Any,
              current: host.InstallState | None, say: Event) -> host.InstallState:
        m, cspec = plan.verified.manifest, self._spec(plan)
        engine.remove(client, cspec.name)
        common.check_port_free(plan.params)
        say(f"starting {cspec.name}")
        container_id = engine.start(client, cspec)
        url = engine.base_url(plan.params.bind, plan.params.port)
        return host.InstallState(
            name=m.name, version=m.version, digest=plan.verified.sums_sha256,
            key_fingerprint=plan.verified.key_fingerprint, target=self.name, endpoint=f"{url}/v1",
            container_id=container_id, container_name=cspec.name, image_id=plan.image_id, image_tags=tuple(tags),
            bind=plan.params.bind, port=plan.params.port, network=plan.params.network,
            api_key_file=str(key_file) if key_file else None, installed=versions.now(),
            health_url=url + cspec.health_path,
            extra={"prefix": str(plan.prefix), "servedName": plan.ctx.served_name, "versionId": plan.vid,
                   model_update.RUNTIME_KEY: model_update.record(plan.runtime),
                   "startPeriod": plan.health_timeout or float(cspec.start_period_s),
                   "container": spec_to_dict(cspec)})

    def result(self, done: Done) -> InstallResult:
        return self._result(done.plan, done.state, done.new_key, done.report, done.timings)

    def _result(self, plan: Plan, st: host.InstallState, new_key: str | None, report: DoctorReport | None,
                timings: dict[str, float]) -> InstallResult:
        return InstallResult(state=st, prefix=str(plan.prefix), started=True, served_name=plan.ctx.served_name,
                             deploy_files=tuple(plan.deploy_files), document="version", api_key=new_key,
                             api_key_file=st.api_key_file, endpoint=st.endpoint, smoke=st.smoke, doctor=report,
                             timings=timings)

    def last_logs(self, client: Any, st: host.InstallState) -> str:
        return log_tail(client, st.container_id)

    def failed_switch(self, message: str, logs: str, outcome: str) -> tuple[str, str]:
        reason = with_logs(message, logs)
        return f"{reason}; the new container was removed; {outcome}", f"{reason}; {outcome}"

    def restore_outcome(self, record: Record, source: str | None, restored: bool) -> str:
        return common.restore_outcome(record, source, restored)

    # ---- the lifecycle of installed versions -------------------------------------------------------------
    def lifecycle_client(self, client: Any) -> Any:
        return engine.connect(client)

    def stop(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> None:
        stop_container(client, st.container_id)

    def resume(self, prefix: Path, vid: str, st: host.InstallState, client: Any, say: Event) -> host.InstallState:
        """Start a kept version's container again (recreated from its stored spec when it is gone), check it."""
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
        smoke = common.check(st, say, lambda: engine.exited(client, cid))
        return common.record_smoke(prefix, vid, st, smoke)

    def undo_new(self, prefix: Path, record: Record, pending: Pending, client: Any) -> None:
        for cid in containers_of(client, prefix, pending.target):
            engine.remove(client, cid)

    def remove(self, prefix: Path, vid: str, st: host.InstallState, client: Any) -> Removal:
        removed = sorted(c for c in {st.container_id, *containers_of(client, prefix, vid)} if engine.remove(client, c))
        return Removal(containers=tuple(removed))

    def remove_all(self, prefix: Path, record: Record | None, states: dict[str, host.InstallState],
                   client: Any) -> Removal:
        removed = remove_containers(prefix_containers(prefix, record, client), states, client)
        return Removal(containers=tuple(removed), audit={"containersRemoved": len(removed)})
