"""Install a verified bundle on this host, for any target: the one lifecycle core.

``install`` takes only a :class:`~airpack.verify.VerifiedBundle`, so the types prove verification ran. Even so,
every byte it uses is checked again as it is read (the medium may lie on a second read): weights are re-hashed
while copied, images while streamed to the engine, deploy files before they are rendered. The order keeps a
failure cheap: host checks, the downgrade rule and the weights copy all happen before anything is stopped.

Under the prefix lock: audit ``verify`` → undo a half-done switch → plan (render the target's deploy files) →
host checks → downgrade rule → journal → stage (weights, files, images) → stop the active version (kept) →
start → health → smoke test → commit → audit → prune. A failure after the journal is written undoes the switch
(exit 4 for a failed health check or smoke test, with the old version answering again). The target
(:mod:`airpack.install.targets`) says what each step means; nothing here names one.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.deploy import deploy_context
from airpack.errors import AirpackError, HealthError, RefusedError
from airpack.install import audit, engine, host, lifecycle, model_update, targets, versions
from airpack.install.deploy_files import host_params, signed_deploy
from airpack.install.doctor import DoctorReport, doctor, failed_checks
from airpack.install.flags import check_api_key
from airpack.install.options import InstallOptions
from airpack.install.remove import prune
from airpack.install.results import InstallResult
from airpack.install.targets import common
from airpack.install.targets.base import Done, Plan, Target
from airpack.install.versions import Pending, Record
from airpack.progress import Event, Reporter, Silent
from airpack.render import default_host_params, host_diff, render_host
from airpack.spec import parse_spec
from airpack.verify import VerifiedBundle


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
    ``reporter`` shows byte progress, ``on_event`` one line per phase; the library prints nothing.
    """
    m = verified.manifest
    prefix = options.prefix.absolute()
    target = targets.get(options.target)
    with versions.locked(prefix):
        audit.append(prefix, audit.entry("verify", name=m.name, version=m.version, digest=verified.sums_sha256,
                                         key_fingerprint=verified.key_fingerprint, bundle=str(verified.path)))
        try:
            return _install(verified, options, target, prefix, client, reporter or Silent(),
                            on_event or lifecycle.quiet)
        except AirpackError as exc:
            if not isinstance(exc, HealthError):  # a health failure was audited with the restore outcome
                audit.append(prefix, audit.entry("install", name=m.name, version=m.version,
                                                 digest=verified.sums_sha256, outcome="failed", reason=str(exc),
                                                 key_fingerprint=verified.key_fingerprint))
            raise


def _plan(verified: VerifiedBundle, options: InstallOptions, target: Target, prefix: Path,
          rt: model_update.Runtime) -> Plan:
    """Choose and render this target's deploy files for this host (each re-hashed as read), and diff them."""
    m = verified.manifest
    vid = versions.version_id(m.version, verified.sums_sha256)
    ctx = deploy_context(rt.spec, rt.lock, rt.images)
    params = host_params(verified, ctx, target, prefix, port=options.port, bind=options.bind,
                         network=options.network, registry=options.registry, api_key=options.api_key,
                         weights=options.weights)
    check_api_key(ctx, options.api_key)
    chosen = target.deploy_files(signed_deploy(verified.path, m))
    diff = ""
    if "--show-diff" in target.flags:
        base = default_host_params(ctx.slug, gpus=rt.spec.target.gpus,
                                   registry="registry.invalid" if options.registry else None,
                                   weights=params.weights, model_digest=params.model_digest,
                                   weights_digest=params.weights_digest)
        diff = host_diff(chosen, params, base)
    runtime = next(i for i in rt.lock.images if i.role == "runtime")
    return Plan(verified, prefix, vid, rt, ctx, params, render_host(chosen, params), diff, runtime.config_digest,
                health_timeout=options.health_timeout, apply=options.apply)


def _install(verified: VerifiedBundle, options: InstallOptions, target: Target, prefix: Path, client: Any,
             reporter: Reporter, say: Event) -> InstallResult:
    clock = _Clock()
    m = verified.manifest
    record, current = lifecycle.settle(prefix, m.name, target=target.name)  # refused before an engine is needed
    if parse_spec(m.spec, verified.path, check_paths=False).runtime is None:  # a model update
        if not target.model_updates:
            takers = " or ".join(f"--target {n}" for n, t in targets.TARGETS.items() if t.model_updates)
            raise RefusedError(f"{m.name} {m.version} is a model-only bundle (a model update): --target "
                               f"{target.name} does not take one",
                               hint=f"install it with {takers} onto a prefix that runs that model")
        if current is None:  # nothing here to update
            model_update.runtime_for(verified, None)
    if target.local_engine:
        client = engine.connect(client)
    if record is not None and record.pending is not None:  # a switch a killed command left: undone first
        record, current = lifecycle.settle(prefix, m.name, client=client, say=say, target=target.name)
    plan = _plan(verified, options, target, prefix, model_update.runtime_for(verified, current))
    vid = plan.vid
    report: DoctorReport | None = None
    if target.local_engine:
        say("checking the host")
        report = doctor(prefix, m, verified.path, client)
        if not report.ok:
            raise failed_checks(report)
    target.check_host()
    again = record is not None and current is not None and record.active == vid
    if again and current is not None and (done := target.again(plan, current, client, report, say)) is not None:
        return done
    host.check_upgrade(current, m.name, m.version, allow_downgrade=options.allow_downgrade)
    clock.lap("doctor")

    op = "install" if current is None or again else "upgrade"
    base = record or Record(name=m.name)
    base = replace(base, previous=None if base.previous == vid else base.previous,
                   extra={**base.extra, **target.record_extra(plan)})
    target.clear(plan, client)
    rec = base
    if target.journaled:
        rec = replace(base, pending=Pending(op, base.active, vid, True, "copying", pid=os.getpid(),
                                            started=versions.now()))
        versions.write_record(prefix, rec)

    def phase(name: str) -> None:
        nonlocal rec
        if name == "loading":
            clock.lap("copyWeights")
        if rec.pending is not None:
            rec = versions.set_phase(prefix, rec, name)

    state: host.InstallState | None = None
    try:
        tags = target.stage(plan, current, client, reporter, phase)
        clock.lap("loadImages")
        key_file, new_key = host.ensure_api_key(prefix) if options.api_key else (None, None)
        phase("stopping")
        if current is not None and base.active is not None and base.active != vid:
            if target.journaled:
                say(f"stopping {current.container_name} (kept, to be started again if {m.version} fails)")
            target.stop(prefix, base.active, current, client, say)
        phase("starting")
        state = target.start(plan, tags, key_file, client, current, say)
        clock.lap("start")
        phase("health")
        smoke = target.check(state, client, say, on_healthy=lambda: clock.lap("healthy"))
    except BaseException as exc:  # noqa: BLE001 - undone, then re-raised (or turned into exit 4)
        raise _fail_switch(target, client, prefix, rec, state, exc, verified, say) from None
    if smoke is not None:
        clock.timings["firstToken"] = smoke.ttft_s or 0.0
    clock.lap("complete")
    clock.timings["complete"] -= clock.timings.get("firstToken", 0.0)

    if smoke is not None:
        state = common.record_smoke(prefix, vid, state, smoke)
    else:
        versions.write_version(prefix, vid, state)
    previous = base.active if base.active and base.active != vid else base.previous
    lifecycle.commit(prefix, replace(base, active=vid, previous=None if previous == vid else previous, pending=None))
    state = target.finish(plan, state)
    audit.append(prefix, audit.entry(op, name=m.name, version=m.version, digest=verified.sums_sha256,
                                     key_fingerprint=verified.key_fingerprint,
                                     previous=current.version if current and not again else None,
                                     **target.audit_fields(state)))
    pruned = prune(prefix, options.keep, client)
    result = target.result(Done(plan, state, current, new_key, key_file, report, smoke, clock.timings))
    return replace(result, pruned=tuple(pruned))


def _fail_switch(target: Target, client: Any, prefix: Path, record: Record, state: host.InstallState | None,
                 exc: BaseException, verified: VerifiedBundle, say: Event) -> BaseException:
    """Undo a switch that failed: what the new version started goes with its folder, the old version runs
    again. A failed health check or smoke test becomes one HealthError (exit 4) that says what answers now."""
    m, pending = verified.manifest, record.pending
    if pending is None:
        return exc
    logs = target.last_logs(client, state) if isinstance(exc, HealthError) and state is not None else ""
    undone = lifecycle.undo(client, prefix, record, say, log=False)
    restored = undone is not None and pending.source is not None and undone.active == pending.source
    outcome = target.restore_outcome(record, pending.source, restored)
    if not isinstance(exc, HealthError):
        return exc
    message, reason = target.failed_switch(exc.message, logs, outcome)
    audit.append(prefix, audit.entry(pending.op, name=m.name, version=m.version, digest=verified.sums_sha256,
                                     key_fingerprint=verified.key_fingerprint, outcome="failed", reason=reason))
    return HealthError(message, hint="fix the cause and run install again")
