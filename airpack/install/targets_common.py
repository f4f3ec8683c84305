"""What the compose, systemd and kubernetes install targets share: options, the result, the plan, and the
steps they have in common (re-hashed weights copy, deploy files, health and smoke test, the install record).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airpack._fs import atomic_write_bytes
from airpack.errors import HealthError, InstallError, UsageError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.install import engine, host
from airpack.install import targets_run as tr
from airpack.install.health import probe, smoke_test, wait_healthy
from airpack.install.images import load_images, original_tags
from airpack.layout import Entry
from airpack.progress import Reporter
from airpack.render import DeployContext, HostParams
from airpack.verify import VerifiedBundle

TARGETS = ("compose", "systemd", "kubernetes")
MAX_DEPLOY_FILE = 16 * 1024 * 1024
KEY_MANIFEST = "kubernetes/secret-api-key.yaml"  # the Secret that holds the API key
Event = Callable[[str], None]


@dataclass(frozen=True)
class TargetOptions:
    """What the operator chose. ``registry`` (``HOST[:PORT][/PREFIX]``) is required for Kubernetes."""

    prefix: Path
    target: str
    port: int = 8000
    bind: str = "127.0.0.1"
    network: str = "host"
    allow_downgrade: bool = False
    api_key: bool = True
    registry: str | None = None
    apply: bool = False
    health_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"--target {self.target!r} is not one of docker, {', '.join(TARGETS)}")
        if self.target == "kubernetes" and not self.registry:
            raise UsageError(
                "--target kubernetes needs --registry HOST[:PORT][/PREFIX]",
                hint="the registry 'airpack push' put the images in",
            )


@dataclass(frozen=True)
class TargetResult:
    target: str
    name: str
    version: str
    prefix: str
    started: bool
    served_name: str
    deploy_files: tuple[str, ...]
    deploy_diff: str
    commands: tuple[str, ...] = ()  # what the operator still has to run (nothing when started)
    alternatives: tuple[str, ...] = ()
    api_key: str | None = None  # only when made by this install: it is shown once
    api_key_file: str | None = None
    endpoint: str | None = None
    smoke: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "target": self.target,
            "name": self.name,
            "version": self.version,
            "prefix": self.prefix,
            "started": self.started,
            "servedName": self.served_name,
            "deployFiles": list(self.deploy_files),
            "deployDiff": self.deploy_diff,
            "commands": list(self.commands),
            "alternativeCommands": list(self.alternatives),
            "apiKey": self.api_key,
            "apiKeyFile": self.api_key_file,
            "endpoint": self.endpoint,
            "smoke": self.smoke,
        }


@dataclass(frozen=True)
class Plan:
    """Everything decided before the host is touched."""

    verified: VerifiedBundle
    options: TargetOptions
    prefix: Path
    ctx: DeployContext
    params: HostParams
    rendered: dict[str, bytes]
    diff: str
    image_id: str


def read_signed(bundle: Path, entry: Entry) -> bytes:
    with (bundle / entry.path).open("rb") as fh:
        data = fh.read(MAX_DEPLOY_FILE + 1)
    if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
        raise VerificationError(
            f"{bundle / entry.path}: changed since it was verified", hint="copy the bundle again and retry"
        )
    return data


def copy_weights(p: Plan, reporter: Reporter) -> Path:
    """Stage the weights under the prefix, each file re-hashed against its signed sha256."""
    p.prefix.mkdir(parents=True, exist_ok=True)
    weights = [e for e in p.verified.manifest.files if e.kind == "model"]
    advance = reporter.task("copying weights", sum(e.size for e in weights))
    stage = host.stage_weights(p.verified.path, weights, p.prefix, advance)
    reporter.done(advance)
    return stage


def write_deploy(prefix: Path, files: dict[str, bytes], private: frozenset[str] = frozenset()) -> list[str]:
    """Replace ``<prefix>/deploy`` with ``files`` (``private`` ones 0600); returns paths relative to the prefix."""
    folder = prefix / host.DEPLOY_DIR
    shutil.rmtree(folder, ignore_errors=True)
    for rel, data in sorted(files.items()):
        atomic_write_bytes(folder / rel, data, mode=0o600 if rel in private else 0o644)
    return [f"{host.DEPLOY_DIR}/{rel}" for rel in sorted(files)]


def check_port_free(params: HostParams) -> None:
    status, _ = probe(f"{engine.base_url(params.bind, params.port)}/", timeout=1.0)
    if status is not None:
        raise InstallError(
            f"port {params.port} on {params.bind} is already in use",
            hint="stop what listens there, or choose another --port",
        )


def health_and_smoke(
    p: Plan,
    health_path: str,
    timeout: float,
    alive: Callable[[], str | None],
    key_file: Path | None,
    say: Event,
) -> dict[str, Any]:
    """Wait for the health URL, then one chat completion; HealthError when either fails."""
    url = engine.base_url(p.params.bind, p.params.port)
    wait_healthy(url + health_path, timeout=p.options.health_timeout or timeout, alive=alive, on_event=say)
    say("smoke test: one chat completion")
    smoke = smoke_test(url, p.ctx.served_name, host.read_api_key(key_file) if key_file else None)
    if not smoke.ok:
        raise HealthError(f"smoke test failed: {smoke.error}")
    return smoke.to_dict()


def record(
    p: Plan,
    *,
    container_id: str,
    container_name: str,
    tags: list[str],
    key_file: Path | None,
    health_path: str,
    smoke: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Write ``airpack-install.json`` (last), so ``airpack status`` sees this install."""
    v, url = p.verified, engine.base_url(p.params.bind, p.params.port)
    state = host.InstallState(
        name=v.manifest.name,
        version=v.manifest.version,
        digest=v.sums_sha256,
        key_fingerprint=v.key_fingerprint,
        target=p.options.target,
        endpoint=f"{url}/v1",
        container_id=container_id,
        container_name=container_name,
        image_id=p.image_id,
        image_tags=tuple(tags),
        bind=p.params.bind,
        port=p.params.port,
        network=p.params.network,
        api_key_file=str(key_file) if key_file else None,
        installed=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        health_url=url + health_path,
        smoke=smoke,
        extra={"prefix": str(p.prefix), "servedName": p.ctx.served_name, **extra},
    )
    host.write_state(p.prefix, state)


def result(
    p: Plan,
    files: list[str],
    *,
    started: bool,
    new_key: str | None,
    key_file: Path | None,
    commands: Sequence[Sequence[str]] = (),
    alternatives: Sequence[Sequence[str]] = (),
    smoke: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> TargetResult:
    m = p.verified.manifest
    endpoint = (
        f"{engine.base_url(p.params.bind, p.params.port)}/v1" if p.options.target != "kubernetes" else None
    )
    return TargetResult(
        target=p.options.target,
        name=m.name,
        version=m.version,
        prefix=str(p.prefix),
        started=started,
        served_name=p.ctx.served_name,
        deploy_files=tuple(files),
        deploy_diff=p.diff,
        commands=tuple(tr.shell_line(c) for c in commands),
        alternatives=tuple(tr.shell_line(c) for c in alternatives),
        api_key=new_key,
        api_key_file=str(key_file) if key_file else None,
        endpoint=endpoint,
        smoke=smoke,
        extra=extra or {},
    )


def weights_and_images(p: Plan, client: Any, reporter: Reporter) -> list[str]:
    stage = copy_weights(p, reporter)
    try:
        tags = [*load_images(p.verified, client, reporter), *original_tags(p.verified)]
        host.publish_weights(stage, p.prefix)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return tags
