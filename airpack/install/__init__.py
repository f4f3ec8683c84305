"""Install a verified bundle on this host, and report on or remove what was installed.

``install`` takes only a :class:`~airpack.verify.VerifiedBundle`, so the types prove verification ran. Even so,
every byte it uses is checked again as it is read (the medium may lie on a second read): weights are re-hashed
while copied, images while streamed to the engine, deploy files before they are rendered. The order keeps a
failure cheap: host checks, the downgrade rule and the weights copy all happen before anything is started.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from airpack._fs import read_capped
from airpack.bundle_layout import Entry
from airpack.errors import AirpackError, HealthError, InstallError, UsageError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.install import audit, engine, host, lifecycle, model_update, versions
from airpack.install.doctor import DoctorReport, doctor
from airpack.install.health import SmokeResult, probe
from airpack.install.images import load_images, original_tags
from airpack.install.manage import prune, status, uninstall
from airpack.progress import Reporter, Silent
from airpack.render import HostParams, render_host
from airpack.spec import parse_spec
from airpack.verify import VerifiedBundle

TARGETS = ("docker",)
MAX_DEPLOY_FILE = 16 * 1024 * 1024
Event = Callable[[str], None]


@dataclass(frozen=True)
class InstallOptions:
    """What the operator chose. ``health_timeout`` None: the engine profile's start period."""

    prefix: Path
    target: str = "docker"
    port: int = 8000
    bind: str = "127.0.0.1"
    network: str = "host"
    allow_downgrade: bool = False
    api_key: bool = True
    health_timeout: float | None = None
    keep: int | None = None  # after a successful install, keep at most this many versions (None: all)

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise UsageError(f"--keep {self.keep}: keep at least 1 version")


@dataclass(frozen=True)
class InstallResult:
    state: host.InstallState
    api_key: str | None  # only when made by this install: it is shown once
    deploy_files: tuple[str, ...]
    doctor: DoctorReport
    timings: dict[str, float] = field(default_factory=dict)
    pruned: tuple[str, ...] = ()  # version ids removed by --keep

    def to_dict(self) -> dict[str, Any]:
        return {**self.state.to_dict(), "apiKey": self.api_key, "pruned": list(self.pruned),
                "deployFiles": list(self.deploy_files), "doctor": self.doctor.to_dict(),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


def _read_signed(bundle: Path, entry: Entry) -> bytes:
    try:
        data = read_capped(bundle / entry.path, MAX_DEPLOY_FILE)  # no link, no FIFO, at most a deploy file
    except OSError as exc:
        raise VerificationError(f"{bundle / entry.path}: changed since it was verified ({exc})",
                                hint="copy the bundle again and retry") from None
    if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
        raise VerificationError(f"{bundle / entry.path}: changed since it was verified",
                                hint="copy the bundle again and retry")
    return data


def _failed_checks(report: DoctorReport) -> InstallError:
    parts = [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in report.failures]
    return InstallError("the host cannot run this bundle: " + "; ".join(parts),
                        hint="'airpack doctor BUNDLE' shows every check")


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.timings[name] = now - self._t
        self._t = now


def install(verified: VerifiedBundle, options: InstallOptions, *, client: Any = None,
            reporter: Reporter | None = None, on_event: Event | None = None) -> InstallResult:
    """Check the host, copy the weights, load the images, switch to the new version, health, smoke test.

    The prefix is locked for the whole install. A version already active stays staged (stopped, kept) and is
    started again if the new one fails; every step is journaled (see :mod:`airpack.install.versions`).
    """
    m = verified.manifest
    prefix = options.prefix.absolute()
    if options.target not in TARGETS:
        raise InstallError(f"install target {options.target!r} is not supported", hint="use --target docker")
    with versions.locked(prefix):
        audit.append(prefix, audit.entry("verify", name=m.name, version=m.version, digest=verified.sums_sha256,
                                         key_fingerprint=verified.key_fingerprint, bundle=str(verified.path)))
        try:
            return _install(verified, options, prefix, client, reporter or Silent(), on_event or (lambda _: None))
        except AirpackError as exc:
            if not isinstance(exc, HealthError):  # a health failure was audited with the restore outcome
                audit.append(prefix, audit.entry("install", name=m.name, version=m.version,
                                                 digest=verified.sums_sha256, outcome="failed", reason=str(exc),
                                                 key_fingerprint=verified.key_fingerprint))
            raise


def _install(verified: VerifiedBundle, options: InstallOptions, prefix: Path, client: Any, reporter: Reporter,
             say: Event) -> InstallResult:
    clock = _Clock()
    m = verified.manifest
    if parse_spec(m.spec, verified.path, check_paths=False).runtime is None \
            and lifecycle.settle(prefix, m.name)[1] is None:  # a model update with nothing here to update
        model_update.runtime_for(verified, None)  # refused (exit 2) before the engine is needed
    client = engine.connect(client)
    record, current = lifecycle.settle(prefix, m.name, client=client, say=say)
    rt = model_update.runtime_for(verified, current)  # a model-only bundle runs on the active version's runtime
    spec, lock = rt.spec, rt.lock
    vid = versions.version_id(m.version, verified.sums_sha256)
    vdir = versions.version_dir(prefix, vid)
    params = HostParams(prefix=str(vdir), port=options.port, bind=options.bind, gpus=spec.target.gpus,
                        network=options.network,
                        api_key_file=str(prefix / host.API_KEY_FILE) if options.api_key else None)
    from airpack.deploy import deploy_context  # noqa: PLC0415

    ctx = deploy_context(spec, lock, rt.images)
    runtime = next(i for i in lock.images if i.role == "runtime")
    name = f"{engine.container_name(ctx.slug, prefix)}-{vid}"
    cspec = engine.container_spec(ctx, params, image_id=runtime.config_digest, digest=verified.sums_sha256,
                                  name=name)
    labels = dict(cspec.labels) | {engine.LABEL_PREFIX: str(prefix), lifecycle.LABEL_VERSION_ID: vid}
    cspec = replace(cspec, labels=tuple(labels.items()))

    say("checking the host")
    report = doctor(prefix, m, verified.path, client)
    if not report.ok:
        raise _failed_checks(report)
    if record is not None and record.active == vid and current is not None:
        return _already_active(prefix, vid, current, rendered_files(m), report, client, say)
    host.check_upgrade(current, m.name, m.version, allow_downgrade=options.allow_downgrade)
    deploy_src = {e.path.removeprefix("deploy/"): _read_signed(verified.path, e)
                  for e in m.files if e.kind == "deploy" and not e.path.startswith("deploy/kubernetes/")}
    rendered = render_host(deploy_src, params)
    clock.lap("doctor")

    op = "install" if current is None else "upgrade"
    base = record or versions.Record(name=m.name)
    base = replace(base, previous=None if base.previous == vid else base.previous)
    for cid in lifecycle.containers_of(client, prefix, vid):  # a kept copy of this very version: replaced
        engine.remove(client, cid)
    record = replace(base, pending=versions.Pending(op, base.active, vid, True, "copying",
                                                    pid=os.getpid(), started=versions.now()))
    versions.write_record(prefix, record)
    container_id = ""
    try:
        versions.stage(prefix, vid, verified, rendered, reporter)
        clock.lap("copyWeights")
        record = versions.set_phase(prefix, record, "loading")
        tags = [*load_images(verified, client, reporter), *original_tags(verified)] if rt.update_of is None \
            else list(current.image_tags if current else ())  # a model update: the runtime's images are here
        clock.lap("loadImages")
        key_file, new_key = host.ensure_api_key(prefix) if options.api_key else (None, None)
        record = versions.set_phase(prefix, record, "stopping")
        if current is not None:
            say(f"stopping {current.container_name} (kept, to be started again if {m.version} fails)")
            lifecycle.stop(client, current.container_id)
        engine.remove(client, name)
        _check_port_free(params)
        record = versions.set_phase(prefix, record, "starting")
        say(f"starting {name}")
        container_id = engine.start(client, cspec)
        clock.lap("start")
        url = engine.base_url(params.bind, params.port)
        state = host.InstallState(
            name=m.name, version=m.version, digest=verified.sums_sha256,
            key_fingerprint=verified.key_fingerprint, target=options.target, endpoint=f"{url}/v1",
            container_id=container_id, container_name=name, image_id=runtime.config_digest,
            image_tags=tuple(tags), bind=params.bind, port=params.port, network=params.network,
            api_key_file=str(key_file) if key_file else None, installed=versions.now(),
            health_url=url + cspec.health_path,
            extra={"prefix": str(prefix), "servedName": ctx.served_name, "versionId": vid,
                   model_update.RUNTIME_KEY: model_update.record(rt),
                   "startPeriod": options.health_timeout or float(cspec.start_period_s),
                   "container": lifecycle.spec_to_dict(cspec)})
        record = versions.set_phase(prefix, record, "health")
        smoke = lifecycle.check(client, state, container_id, say, on_healthy=lambda: clock.lap("healthy"))
    except BaseException as exc:  # noqa: BLE001 - undone, then re-raised (or turned into exit 4)
        raise _fail_switch(client, prefix, record, container_id, exc, verified, say) from None
    clock.timings["firstToken"] = smoke.ttft_s or 0.0
    clock.lap("complete")
    clock.timings["complete"] -= clock.timings["firstToken"]

    state = lifecycle.record_smoke(prefix, vid, state, smoke)
    lifecycle.commit(prefix, versions.Record(m.name, active=vid,
                                             previous=base.active if base.active else base.previous))
    audit.append(prefix, audit.entry(op, name=m.name, version=m.version, digest=verified.sums_sha256,
                                     key_fingerprint=verified.key_fingerprint,
                                     previous=current.version if current else None))
    pruned = prune(prefix, options.keep, client)
    deploy_files = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(rendered)]
    return InstallResult(state, new_key, tuple(deploy_files), report, clock.timings, tuple(pruned))


def rendered_files(m: Any) -> list[str]:
    return sorted(f"{host.DEPLOY_DIR}/{e.path.removeprefix('deploy/')}" for e in m.files
                  if e.kind == "deploy" and not e.path.startswith("deploy/kubernetes/"))


def _already_active(prefix: Path, vid: str, current: host.InstallState, files: list[str],
                    report: DoctorReport, client: Any, say: Event) -> InstallResult:
    """A rerun of an install that completed: nothing to install while it answers (a rerun is idempotent), but
    the smoke test runs again and is the one reported (exit 4 when it fails now)."""
    code, body = probe(current.health_url)
    if code != 200:
        raise InstallError(f"{current.name} {current.version} is the active version here but does not answer "
                           f"({code or body})", hint="'airpack rollback', or 'airpack uninstall' and install again")
    current = lifecycle.record_smoke(prefix, vid, current, lifecycle.check(client, current, current.container_id, say))
    audit.append(prefix, audit.entry("install", name=current.name, version=current.version, digest=current.digest,
                                     key_fingerprint=current.key_fingerprint, reason="already active"))
    return InstallResult(current, None, tuple(files), report, {})


def _fail_switch(client: Any, prefix: Path, record: versions.Record, container_id: str, exc: BaseException,
                 verified: VerifiedBundle, say: Event) -> BaseException:
    """Undo a switch that failed: the new container and folder go, the old version answers again."""
    m = verified.manifest
    if record.pending is None:
        return exc
    reason = lifecycle.failure(client, container_id, exc) if isinstance(exc, AirpackError) else repr(exc)
    undone = lifecycle.undo(client, prefix, record, say, log=False)
    restored = undone is not None and undone.active == record.pending.source and record.pending.source
    outcome = (f"the previous version {record.pending.source} is answering again" if restored
               else "nothing was installed before" if record.pending.source is None
               else f"restoring {record.pending.source} failed: see 'airpack status'")
    if not isinstance(exc, HealthError):
        return exc
    audit.append(prefix, audit.entry(record.pending.op, name=m.name, version=m.version,
                                     digest=verified.sums_sha256, key_fingerprint=verified.key_fingerprint,
                                     outcome="failed", reason=f"{reason}; {outcome}"))
    return HealthError(f"{reason}; the new container was removed; {outcome}",
                       hint="fix the cause and run install again")


def _check_port_free(params: HostParams) -> None:
    status, _ = probe(f"{engine.base_url(params.bind, params.port)}/", timeout=1.0)
    if status is not None:
        raise InstallError(f"port {params.port} on {params.bind} is already in use",
                           hint="stop what listens there, or choose another --port")


rollback = lifecycle.rollback

__all__ = ["InstallOptions", "InstallResult", "SmokeResult", "install", "rollback", "status", "uninstall"]
