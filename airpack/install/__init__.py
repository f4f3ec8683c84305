"""Install a verified bundle on this host, and report on or remove what was installed.

``install`` takes only a :class:`~airpack.verify.VerifiedBundle`, so the types prove verification ran. Even so,
every byte it uses is checked again as it is read (the medium may lie on a second read): weights are re-hashed
while copied, images while streamed to the engine, deploy files before they are rendered. The order keeps a
failure cheap: host checks, the downgrade rule and the weights copy all happen before anything is started.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airpack.errors import HealthError, InstallError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.install import engine, host
from airpack.install.doctor import DoctorReport, doctor
from airpack.install.health import SmokeResult, probe, smoke_test, wait_healthy
from airpack.install.images import load_images, original_tags
from airpack.layout import Entry
from airpack.lock import Lock
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


@dataclass(frozen=True)
class InstallResult:
    state: host.InstallState
    api_key: str | None  # only when made by this install: it is shown once
    deploy_files: tuple[str, ...]
    doctor: DoctorReport
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.state.to_dict(), "apiKey": self.api_key,
                "deployFiles": list(self.deploy_files), "doctor": self.doctor.to_dict(),
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


def _read_signed(bundle: Path, entry: Entry) -> bytes:
    with (bundle / entry.path).open("rb") as fh:
        data = fh.read(MAX_DEPLOY_FILE + 1)
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
    """Check the host, copy the weights, load the images, start the engine, wait for health, smoke-test it."""
    say = on_event or (lambda _: None)
    reporter = reporter or Silent()
    clock = _Clock()
    m = verified.manifest
    spec = parse_spec(m.spec, verified.path, check_paths=False)
    lock = Lock.from_dict(m.lock)
    if spec.runtime is None:
        raise InstallError(f"{m.name} {m.version} declares no runtime: there is nothing to run",
                           hint="copy the weights from the bundle's model/ folder yourself")
    if options.target not in TARGETS:
        raise InstallError(f"install target {options.target!r} is not supported", hint="use --target docker")
    prefix = options.prefix.absolute()
    params = HostParams(prefix=str(prefix), port=options.port, bind=options.bind, gpus=spec.target.gpus,
                        network=options.network,
                        api_key_file=str(prefix / host.API_KEY_FILE) if options.api_key else None)
    from airpack.deploy import deploy_context

    ctx = deploy_context(spec, lock, list(m.images))
    runtime = next(i for i in lock.images if i.role == "runtime")
    name = engine.container_name(ctx.slug, prefix)
    cspec = engine.container_spec(ctx, params, image_id=runtime.config_digest, digest=verified.sums_sha256,
                                  name=name)

    client = engine.connect(client)
    say("checking the host")
    report = doctor(prefix, m, verified.path, client)
    if not report.ok:
        raise _failed_checks(report)
    current = host.read_state(prefix)
    host.check_upgrade(current, m.name, m.version, allow_downgrade=options.allow_downgrade)
    # What runs on this host: Compose, systemd and Ollama files (Kubernetes ones need a cluster's registry).
    deploy_src = {e.path.removeprefix("deploy/"): _read_signed(verified.path, e)
                  for e in m.files if e.kind == "deploy" and not e.path.startswith("deploy/kubernetes/")}
    rendered = render_host(deploy_src, params)
    clock.lap("doctor")

    prefix.mkdir(parents=True, exist_ok=True)
    weights = [e for e in m.files if e.kind == "model"]
    advance = reporter.task("copying weights", sum(e.size for e in weights))
    stage = host.stage_weights(verified.path, weights, prefix, advance)
    reporter.done(advance)
    clock.lap("copyWeights")
    try:
        tags = [*load_images(verified, client, reporter), *original_tags(verified)]
        clock.lap("loadImages")
        for old in {*engine.containers_for(client, str(prefix)), *((current.container_id,) if current else ())}:
            engine.remove(client, old)
        engine.remove(client, name)
        _check_port_free(params)
        host.publish_weights(stage, prefix)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # gone already once published
        raise
    deploy_files = host.write_deploy(prefix, rendered)
    key_file, new_key = host.ensure_api_key(prefix) if options.api_key else (None, None)
    say(f"starting {name}")
    container_id = engine.start(client, cspec)
    clock.lap("start")

    url = engine.base_url(params.bind, params.port)
    health_url = url + cspec.health_path
    timeout = options.health_timeout or float(cspec.start_period_s)
    try:
        wait_healthy(health_url, timeout=timeout, alive=lambda: engine.exited(client, container_id),
                     on_event=say)
        clock.lap("healthy")
        say("smoke test: one chat completion")
        smoke = smoke_test(url, ctx.served_name, host.read_api_key(key_file) if key_file else None)
        if not smoke.ok:
            raise HealthError(f"smoke test failed: {smoke.error}")
    except HealthError as exc:
        raise _health_failure(client, container_id, exc) from None
    except BaseException:
        engine.remove(client, container_id)
        raise
    clock.timings["firstToken"] = smoke.ttft_s or 0.0
    clock.lap("complete")
    clock.timings["complete"] -= clock.timings["firstToken"]

    state = host.InstallState(
        name=m.name, version=m.version, digest=verified.sums_sha256, key_fingerprint=verified.key_fingerprint,
        target=options.target, endpoint=f"{url}/v1", container_id=container_id, container_name=name,
        image_id=runtime.config_digest, image_tags=tuple(tags), bind=params.bind, port=params.port,
        network=params.network, api_key_file=str(key_file) if key_file else None,
        installed=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), health_url=health_url,
        smoke=smoke.to_dict(), extra={"prefix": str(prefix), "servedName": ctx.served_name},
    )
    host.write_state(prefix, state)
    return InstallResult(state, new_key, tuple(deploy_files), report, clock.timings)


def _health_failure(client: Any, container_id: str, exc: HealthError) -> HealthError:
    """Collect the engine's last words, remove its container, and say both."""
    logs = engine.last_logs(client, container_id)
    engine.remove(client, container_id)
    tail = "\n".join(f"  | {line}" for line in logs) or "  | (no log output)"
    return HealthError(f"{exc.message}; the container was removed. Its last log lines:\n{tail}",
                       hint="fix the cause and run install again")


def _check_port_free(params: HostParams) -> None:
    status, _ = probe(f"{engine.base_url(params.bind, params.port)}/", timeout=1.0)
    if status is not None:
        raise InstallError(f"port {params.port} on {params.bind} is already in use",
                           hint="stop what listens there, or choose another --port")


def status(prefix: Path, *, client: Any = None) -> dict[str, Any]:
    """What is installed at ``prefix``, whether its container runs, and whether it is healthy now."""
    prefix = prefix.absolute()
    st = host.read_state(prefix)
    if st is None:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE})")
    container = None
    with contextlib.suppress(InstallError, *engine.docker_errors()):
        container = engine.state(engine.connect(client), st.container_id)
    code, body = probe(st.health_url) if st.health_url else (None, "no health URL recorded")
    return {"prefix": str(prefix), "name": st.name, "version": st.version, "digest": st.digest,
            "endpoint": st.endpoint, "containerName": st.container_name, "containerId": st.container_id,
            "container": container, "healthy": code == 200, "health": {"url": st.health_url, "status": code,
                                                                         "body": body[:120]},
            "installed": st.installed, "smoke": st.smoke, "apiKeyFile": st.api_key_file}


def uninstall(prefix: Path, *, remove_weights: bool = False, remove_images: bool = False,
              client: Any = None) -> dict[str, Any]:
    """Remove the service's containers (and the weights or images when asked); the state goes last."""
    prefix = prefix.absolute()
    st = host.read_state(prefix)
    client = engine.connect(client)
    found = set(engine.containers_for(client, str(prefix)))
    if st is None and not found:
        raise InstallError(f"{prefix}: nothing is installed here (no {host.STATE_FILE}, no container)")
    removed = [c for c in sorted(found | ({st.container_id} if st else set())) if engine.remove(client, c)]
    images: list[str] = []
    if remove_images and st is not None:
        images = _remove_images(client, st)
    gone = host.remove_prefix_files(prefix, weights=remove_weights)
    return {"prefix": str(prefix), "name": st.name if st else None, "containersRemoved": removed,
            "imagesRemoved": images, "filesRemoved": gone, "weightsKept": not remove_weights}


def _remove_images(client: Any, st: host.InstallState) -> list[str]:
    import docker.errors

    removed = []
    for ref in (*st.image_tags, st.image_id):
        try:
            client.api.remove_image(ref, force=False, noprune=False)
            removed.append(ref)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if "conflict" not in str(exc).lower() and "being used" not in str(exc).lower():
                raise InstallError(f"removing image {ref} failed: {exc}") from None
    return removed


__all__ = ["InstallOptions", "InstallResult", "SmokeResult", "install", "status", "uninstall"]
