"""``install --target systemd`` and ``--target kubernetes``: write the rendered units or manifests, then
start them where this host can (systemd as PID 1; ``kubectl`` with ``--apply``), else return the commands.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import Any

from airpack.errors import HealthError, InstallError
from airpack.install import engine, host
from airpack.install import targets_run as tr
from airpack.install.targets_common import (
    KEY_MANIFEST,
    Event,
    Plan,
    TargetResult,
    check_port_free,
    copy_weights,
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
    """Weights under the prefix (a hostPath volume reads them at the same path on the node), the manifests
    and the key's Secret; ``kubectl apply`` only with ``--apply`` and where kubectl exists."""
    stage = copy_weights(p, reporter)
    try:
        host.publish_weights(stage, p.prefix)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    key_file, new_key = host.ensure_api_key(p.prefix) if p.options.api_key else (None, None)
    files = dict(p.rendered)
    if key_file is not None:
        files[KEY_MANIFEST] = tr.api_key_secret(p.ctx.slug, host.read_api_key(key_file))
    written = write_deploy(p.prefix, files, private=frozenset({KEY_MANIFEST}))
    folder = p.prefix / host.DEPLOY_DIR / "kubernetes"
    commands = [tr.push_command(p.verified.path, str(p.options.registry)), *tr.kubectl_commands(folder)]
    applied = False
    if p.options.apply and shutil.which("kubectl"):
        for argv in tr.kubectl_commands(folder):
            tr.run(argv)
        applied, commands = True, []
    return result(
        p,
        written,
        started=applied,
        new_key=new_key,
        key_file=key_file,
        commands=commands,
        extra={"registry": p.options.registry, "applied": applied},
    )
