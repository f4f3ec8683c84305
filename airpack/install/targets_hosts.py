"""``install --target systemd`` and ``--target kubernetes``: write the rendered units or manifests, then
start them where this host can (systemd as PID 1; ``kubectl`` with ``--apply``), else return the commands.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.errors import HealthError, InstallError
from airpack.install import audit, engine, host, lifecycle, versions
from airpack.install import targets_run as tr
from airpack.install.targets_common import (
    KEY_MANIFEST,
    Event,
    Plan,
    TargetResult,
    check_port_free,
    health_and_smoke,
    record,
    result,
    weights_and_images,
    write_deploy,
)
from airpack.progress import Reporter


def systemd_install(
    p: Plan, client: Any, current: host.InstallState | None, reporter: Reporter, say: Event
) -> TargetResult:
    """Weights and images first (the unit runs ``docker run --pull=never``), then the unit files; start them
    only where systemd is PID 1, else return the commands (``started: false``)."""
    tags = weights_and_images(p, client, reporter)
    files = write_deploy(p.prefix, p.rendered)
    key_file, new_key = host.ensure_api_key(p.prefix) if p.options.api_key else (None, None)
    folder = p.prefix / host.DEPLOY_DIR / "systemd"
    unit = f"airpack-{p.ctx.slug}.service"
    commands = tr.systemd_commands(folder / unit)
    alternatives = tr.quadlet_commands(folder / f"airpack-{p.ctx.slug}.container")
    if not tr.systemd_running():
        return result(
            p,
            files,
            started=False,
            new_key=new_key,
            key_file=key_file,
            commands=commands,
            alternatives=alternatives,
            extra={"unit": unit},
        )
    cspec = engine.container_spec(
        p.ctx, p.params, image_id=p.image_id, digest=p.verified.sums_sha256, name=f"airpack-{p.ctx.slug}"
    )
    if current is not None and current.target == "docker":
        engine.remove(client, current.container_id)
    check_port_free(p.params)
    for argv in commands:
        say(tr.shell_line(argv))
        tr.run(argv)

    try:
        smoke = health_and_smoke(
            p, cspec.health_path, float(cspec.start_period_s), lambda: tr.unit_failed(unit), key_file, say
        )
    except HealthError as exc:
        logs = "\n".join(f"  | {line}" for line in tr.journal_tail(unit)) or "  | (no journal output)"
        with contextlib.suppress(InstallError):
            tr.run(["systemctl", "disable", "--now", unit])
        raise HealthError(
            f"{exc.message}; {unit} was stopped and disabled. Its last journal lines:\n{logs}",
            hint="fix the cause and run install again",
        ) from None
    record(
        p,
        container_id=cspec.name,
        container_name=cspec.name,
        tags=tags,
        key_file=key_file,
        health_path=cspec.health_path,
        smoke=smoke,
        extra={"unit": unit},
    )
    return result(
        p, files, started=True, new_key=new_key, key_file=key_file, smoke=smoke, extra={"unit": unit}
    )


def kubernetes_install(p: Plan, reporter: Reporter) -> TargetResult:
    """One folder per version under ``versions/<id>/`` (weights for the ``hostPath`` volume, which reads them at
    the same path on the node, and the manifests with the key's Secret); the record names the active and the
    previous version, so ``airpack rollback`` can print (or run) the commands that apply the previous files.
    ``kubectl apply`` runs only with ``--apply`` and where kubectl exists."""
    m, v, prefix = p.verified.manifest, p.verified, p.prefix
    vid = versions.version_id(m.version, v.sums_sha256)
    with versions.locked(prefix):
        audit.append(prefix, audit.entry("verify", name=m.name, version=m.version, digest=v.sums_sha256,
                                         key_fingerprint=v.key_fingerprint, bundle=str(v.path)))
        record, current = lifecycle.settle(prefix, m.name, target="kubernetes")
        if current is None or record is None or record.active != vid:
            host.check_upgrade(current, m.name, m.version, allow_downgrade=p.options.allow_downgrade)
        key_file, new_key = host.ensure_api_key(prefix) if p.options.api_key else (None, None)
        files = dict(p.rendered)
        if key_file is not None:
            files[KEY_MANIFEST] = tr.api_key_secret(p.ctx.slug, host.read_api_key(key_file))
        vdir = versions.version_dir(prefix, vid)
        if versions.read_version(prefix, vid) is None:  # new: weights (re-hashed) and files, then renamed
            versions.clean_partials(prefix)
            partial = prefix / versions.VERSIONS_DIR / f".{vid}.partial"
            partial.mkdir(parents=True)
            weights = [e for e in m.files if e.kind == "model"]
            advance = reporter.task("copying weights", sum(e.size for e in weights))
            host.publish_weights(host.stage_weights(v.path, weights, partial, advance), partial)
            reporter.done(advance)
            write_deploy(partial, files, private=frozenset({KEY_MANIFEST}))
            versions.remove_version_dir(prefix, vid)
            partial.rename(vdir)
        else:  # installed already (kept or active): its weights stay where the node reads them
            write_deploy(vdir, files, private=frozenset({KEY_MANIFEST}))
        folder = prefix / host.DEPLOY_DIR / "kubernetes"  # the active version's, through ``current``
        applied = False
        commands = [tr.push_command(v.path, str(p.options.registry)), *tr.kubectl_commands(folder)]
        state = host.InstallState(
            name=m.name, version=m.version, digest=v.sums_sha256, key_fingerprint=v.key_fingerprint,
            target="kubernetes", endpoint="", container_id="", container_name=f"deployment/{p.ctx.slug}",
            image_id=p.image_id, image_tags=(), bind=p.params.bind, port=p.params.port, network=p.params.network,
            api_key_file=str(key_file) if key_file else None, installed=versions.now(),
            extra={"prefix": str(prefix), "servedName": p.ctx.served_name, "versionId": vid,
                   "registry": p.options.registry, "manifests": str(vdir / host.DEPLOY_DIR / "kubernetes"),
                   "deployment": p.ctx.slug, "applied": False})
        versions.write_version(prefix, vid, state)
        rec = record or versions.Record(name=m.name)
        previous = rec.active if rec.active and rec.active != vid else rec.previous
        lifecycle.commit(prefix, replace(rec, active=vid, previous=None if previous == vid else previous,
                                         pending=None, extra={**rec.extra, "target": "kubernetes"}))
        if p.options.apply and shutil.which("kubectl"):
            for argv in tr.kubectl_commands(folder):
                tr.run(argv)
            applied, commands = True, []
            versions.write_version(prefix, vid, replace(state, extra={**state.extra, "applied": True}))
        op = "install" if current is None or record is None or record.active == vid else "upgrade"
        audit.append(prefix, audit.entry(op, name=m.name, version=m.version, digest=v.sums_sha256,
                                         key_fingerprint=v.key_fingerprint, applied=applied,
                                         previous=current.version if current and record and record.active != vid
                                         else None))
    written = [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(files)]
    return result(
        p,
        written,
        started=applied,
        new_key=new_key,
        key_file=key_file,
        commands=commands,
        extra={"registry": p.options.registry, "applied": applied, "versionId": vid,
               "previousVersion": current.version if current and current.extra.get("versionId") != vid else None},
    )


def kubernetes_rollback(prefix: Path, record: versions.Record, say: Event) -> dict[str, Any]:
    """Make the previous version active again: ``kubectl apply -f`` its own manifests (run when kubectl exists
    and the active version was applied by airpack; printed otherwise), ``kubectl rollout undo`` as the
    alternative. The record is swapped either way: it names the files that should be applied."""
    if record.active is None:
        raise InstallError(f"{prefix}: nothing is installed here")
    if record.previous is None:
        raise InstallError(f"{prefix}: {record.name} has no previous version to roll back to",
                           hint="'airpack status' lists the installed versions")
    active, target = versions.read_version(prefix, record.active), versions.read_version(prefix, record.previous)
    if active is None or target is None:
        raise InstallError(f"{prefix}: the record names versions without a folder", hint="see 'airpack status'")
    commands, alternatives = rollback_commands(prefix, record.previous, target)
    applied = bool(active.extra.get("applied")) and shutil.which("kubectl") is not None
    if applied:
        for argv in commands:
            say(tr.shell_line(argv))
            tr.run(argv)
    lifecycle.commit(prefix, replace(record, active=record.previous, previous=record.active, pending=None))
    if applied:
        versions.write_version(prefix, record.previous, replace(target, extra={**target.extra, "applied": True}))
    else:
        for argv in commands:
            say(f"run: {tr.shell_line(argv)}")
    audit.append(prefix, audit.entry("rollback", name=target.name, version=target.version, digest=target.digest,
                                     key_fingerprint=target.key_fingerprint, previous=active.version,
                                     applied=applied))
    return {"prefix": str(prefix), "name": target.name, "version": target.version,
            "previousVersion": active.version, "endpoint": None, "containerName": target.container_name,
            "target": "kubernetes", "applied": applied,
            "commands": [] if applied else [tr.shell_line(c) for c in commands],
            "alternativeCommands": [tr.shell_line(c) for c in alternatives]}


def rollback_commands(prefix: Path, vid: str, st: host.InstallState) -> tuple[list[list[str]], list[list[str]]]:
    """Apply the previous version's own manifests; or let Kubernetes undo the last rollout of the Deployment."""
    folder = versions.version_dir(prefix, vid) / host.DEPLOY_DIR / "kubernetes"
    deployment = str(st.extra.get("deployment") or st.container_name.removeprefix("deployment/"))
    return [["kubectl", "apply", "-f", str(folder)]], [["kubectl", "rollout", "undo", f"deployment/{deployment}"]]
