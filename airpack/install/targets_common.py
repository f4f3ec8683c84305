"""What the compose, systemd and kubernetes install targets share: options, the result, the plan, and the
small steps they have in common (signed deploy files read again, deploy files written, the port check).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airpack._fs import read_capped
from airpack.bundle_layout import Entry
from airpack.errors import AirpackError, HealthError, InstallError, UsageError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.install import audit, engine, versions
from airpack.install import targets_run as tr
from airpack.install.health import probe
from airpack.profiles.context import DeployContext
from airpack.render import HostParams
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
    keep: int | None = None  # after a successful install, keep at most this many versions (None: all)

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise UsageError(f"--keep {self.keep}: keep at least 1 version")
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
    try:
        data = read_capped(bundle / entry.path, MAX_DEPLOY_FILE)  # no link, no FIFO, at most a deploy file
    except OSError as exc:
        raise VerificationError(f"{bundle / entry.path}: changed since it was verified ({exc})",
                                hint="copy the bundle again and retry") from None
    if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
        raise VerificationError(
            f"{bundle / entry.path}: changed since it was verified", hint="copy the bundle again and retry"
        )
    return data


def check_port_free(params: HostParams) -> None:
    status, _ = probe(f"{engine.base_url(params.bind, params.port)}/", timeout=1.0)
    if status is not None:
        raise InstallError(
            f"port {params.port} on {params.bind} is already in use",
            hint="stop what listens there, or choose another --port",
        )


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


def audited_install(p: Plan, body: Callable[[], TargetResult]) -> TargetResult:
    """Run ``body`` (an install or upgrade) under the prefix lock, after the audit line for the verified
    bundle; a failure other than a health failure (audited with its restore outcome) gets an audit line too."""
    m, v = p.verified.manifest, p.verified
    with versions.locked(p.prefix):
        audit.append(p.prefix, audit.entry("verify", name=m.name, version=m.version, digest=v.sums_sha256,
                                           key_fingerprint=v.key_fingerprint, bundle=str(v.path)))
        try:
            return body()
        except AirpackError as exc:
            if not isinstance(exc, HealthError):
                audit.append(p.prefix, audit.entry("install", name=m.name, version=m.version,
                                                   digest=v.sums_sha256, outcome="failed", reason=str(exc),
                                                   key_fingerprint=v.key_fingerprint))
            raise
