"""``install --target compose``: the bundle's signed ``compose.yaml``, rendered for this host and brought up.

The order matches the docker target: host checks and the weights copy before anything starts; an old
project at the same prefix is taken down only once the new weights and images are ready. A failed health
check or smoke test takes the new project ``down`` again and reports the engine's last log lines (exit 4).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from typing import Any

from airpack.errors import HealthError, InstallError
from airpack.install import engine, host
from airpack.install import targets_run as tr
from airpack.install.images import load_images, original_tags
from airpack.install.targets_common import (
    Event,
    Plan,
    TargetResult,
    check_port_free,
    copy_weights,
    health_and_smoke,
    record,
    result,
    write_deploy,
)
from airpack.progress import Reporter


def compose_install(
    p: Plan,
    base: Sequence[str],
    client: Any,
    current: host.InstallState | None,
    reporter: Reporter,
    say: Event,
) -> TargetResult:

    project = tr.compose_project(p.ctx.slug, p.prefix)
    file = p.prefix / host.DEPLOY_DIR / "compose.yaml"
    cspec = engine.container_spec(
        p.ctx, p.params, image_id=p.image_id, digest=p.verified.sums_sha256, name=project
    )
    stage = copy_weights(p, reporter)
    try:
        tags = [*load_images(p.verified, client, reporter), *original_tags(p.verified)]
        _take_down_previous(p, base, client, current, project)
        check_port_free(p.params)
        host.publish_weights(stage, p.prefix)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    files = write_deploy(p.prefix, p.rendered)
    key_file, new_key = host.ensure_api_key(p.prefix) if p.options.api_key else (None, None)
    say(f"starting Compose project {project}")
    try:
        tr.run(tr.compose_argv(base, file, project, "up", "-d", "--no-build"))
        ids = tr.run(tr.compose_argv(base, file, project, "ps", "-q")).stdout.split()
        if len(ids) != 1:
            raise InstallError(f"Compose project {project} runs {len(ids)} containers, expected one")
        cid = ids[0]
        smoke = health_and_smoke(
            p,
            cspec.health_path,
            float(cspec.start_period_s),
            lambda: engine.exited(client, cid),
            key_file,
            say,
        )
    except HealthError as exc:
        logs = _logs(base, file, project)
        _down(base, file, project)
        raise HealthError(
            f"{exc.message}; the Compose project was taken down. Its last log lines:\n{logs}",
            hint="fix the cause and run install again",
        ) from None
    except BaseException:
        _down(base, file, project)
        raise
    extra = {"composeProject": project, "composeFile": str(file), "composeCommand": list(base)}
    record(
        p,
        container_id=cid,
        container_name=project,
        tags=tags,
        key_file=key_file,
        health_path=cspec.health_path,
        smoke=smoke,
        extra=extra,
    )
    return result(p, files, started=True, new_key=new_key, key_file=key_file, smoke=smoke, extra=extra)


def _take_down_previous(
    p: Plan, base: Sequence[str], client: Any, current: host.InstallState | None, project: str
) -> None:
    """Stop what a previous install at this prefix runs: a Compose project, or the docker target's container."""
    old = p.prefix / host.DEPLOY_DIR / "compose.yaml"
    if old.is_file():
        _down(base, old, project)
    for ref in {*engine.containers_for(client, str(p.prefix)), *((current.container_id,) if current else ())}:
        engine.remove(client, ref)


def _down(base: Sequence[str], file: Any, project: str) -> None:
    with contextlib.suppress(InstallError):
        tr.run(tr.compose_argv(base, file, project, "down", "--remove-orphans", "--timeout", "10"))


def _logs(base: Sequence[str], file: Any, project: str) -> str:
    lines: list[str] = []
    with contextlib.suppress(InstallError):
        out = tr.run(tr.compose_argv(base, file, project, "logs", "--no-color", "--tail", "20"))
        lines = [line.split("|", 1)[-1].strip() for line in out.stdout.splitlines() if line.strip()][-20:]
    return "\n".join(f"  | {line}" for line in lines) or "  | (no log output)"
