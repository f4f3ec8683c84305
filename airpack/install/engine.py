"""The ``docker`` install target: one container per install, started through the docker SDK.

:func:`container_spec` is a pure function from the bundle's :class:`~airpack.render.DeployContext` and the host
parameters to everything ``docker run`` needs (the same profile invocation the deploy files are rendered from),
so it is unit-tested without an engine. The rest are thin calls on a ``docker.DockerClient``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airpack.errors import InstallError
from airpack.profiles import hardening
from airpack.profiles.context import DeployContext
from airpack.profiles.launch import (
    API_KEY_PATH,
    MODELFILE_PATH,
    Invocation,
    Launch,
    build_invocation,
    health_argv,
)
from airpack.render import HostParams

MODELS = "/models"
LABEL_BUNDLE = "io.airpack.bundle"
LABEL_VERSION = "io.airpack.version"
LABEL_PREFIX = "io.airpack.prefix"
LABEL_DIGEST = "io.airpack.digest"
_SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class ContainerSpec:
    """One engine container, with every value decided."""

    name: str
    image: str  # the signed config digest (image ID): what runs is what was verified
    entrypoint: tuple[str, ...] | None
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    network: str
    bind: str
    port: int  # on the host
    container_port: int  # inside the container (== port with host networking)
    mounts: tuple[tuple[str, str, bool], ...]  # (source, target, read-only); a source without "/" is a volume
    gpus: int
    shm_gib: int | None
    labels: tuple[tuple[str, str], ...]
    health_path: str
    health_cmd: tuple[str, ...] | None
    start_period_s: int
    read_only: bool = True  # the root filesystem (airpack.profiles.hardening)
    tmpfs: tuple[str, ...] = ()  # in-container folders the engine writes to
    cap_add: tuple[str, ...] = ()  # added back after dropping every capability

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.run`` (GPU device requests only when gpus > 0)."""
        from docker.types import DeviceRequest, Mount  # noqa: PLC0415

        kwargs: dict[str, Any] = {
            "image": self.image, "name": self.name, "command": list(self.command), "detach": True,
            "environment": dict(self.environment), "labels": dict(self.labels),
            "restart_policy": {"Name": "unless-stopped"},
            "mounts": [Mount(target=t, source=s, type="bind" if s.startswith("/") else "volume", read_only=ro)
                       for s, t, ro in self.mounts],
            "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            "cap_drop": list(hardening.CAP_DROP), "cap_add": list(self.cap_add),
            "security_opt": [hardening.NO_NEW_PRIVILEGES], "read_only": self.read_only,
            "tmpfs": {d: hardening.TMPFS_OPTIONS for d in self.tmpfs},
        }
        if self.entrypoint is not None:
            kwargs["entrypoint"] = list(self.entrypoint)
        if self.network == "host":
            kwargs["network_mode"] = "host"
        else:
            kwargs["ports"] = {f"{self.container_port}/tcp": (self.bind, self.port)}
        if self.gpus > 0:
            kwargs["device_requests"] = [DeviceRequest(driver="nvidia", count=self.gpus, capabilities=[["gpu"]])]
        if self.shm_gib:
            kwargs["shm_size"] = f"{self.shm_gib}g"
        if self.health_cmd:
            kwargs["healthcheck"] = {"test": ["CMD", *self.health_cmd], "interval": 10 * _SECOND_NS,
                                     "timeout": 5 * _SECOND_NS, "retries": 3,
                                     "start_period": self.start_period_s * _SECOND_NS}
        return kwargs


def container_name(slug: str, prefix: Path) -> str:
    """``airpack-<slug>-<8 hex of the prefix>``: stable for one prefix, distinct across prefixes."""
    return f"airpack-{slug}-{hashlib.sha256(str(prefix).encode()).hexdigest()[:8]}"


def probe_host(bind: str) -> str:
    """The address to reach an engine bound to ``bind`` from this host."""
    if bind == "0.0.0.0":  # noqa: S104 - a bind address, compared
        return "127.0.0.1"
    if bind == "::":
        return "::1"
    return bind


def base_url(bind: str, port: int) -> str:
    host = probe_host(bind)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _strings(inv: Invocation) -> tuple[tuple[str, ...] | None, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The invocation as plain strings: with plain launch values nothing is left for a template."""
    def plain(v: object) -> str:
        if not isinstance(v, str | int | float):
            raise InstallError(f"internal: a launch value was left for a template ({v!r})")
        return str(v)

    entry = tuple(plain(a) for a in inv.entrypoint) if inv.entrypoint is not None else None
    return entry, tuple(plain(a) for a in inv.args), tuple((k, plain(v)) for k, v in inv.env)


def container_spec(ctx: DeployContext, host: HostParams, *, image_id: str, digest: str,
                   name: str) -> ContainerSpec:
    """Everything ``docker run`` needs for ``ctx`` on ``host``: the deploy files' invocation, made concrete."""
    p = ctx.profile
    inner_port = ctx.custom.port if ctx.custom else p.port
    hostnet = host.network == "host"
    port = host.port if hostnet else inner_port
    listen = host.bind if hostnet else "0.0.0.0"  # noqa: S104 - inside the container's own namespace
    keyed = host.api_key_file is not None
    if keyed and not (ctx.custom.api_key_file_flag if ctx.custom else p.api_key_supported):
        raise InstallError(f"engine {p.engine} cannot require an API key", hint="install with --no-api-key")
    launch = Launch(
        served_name=ctx.served_name, listen_host=listen, listen_port=port,
        tensor_parallel=ctx.tensor_parallel or (max(1, host.gpus)), model_dir=MODELS,
        model_file=f"{MODELS}/{ctx.main_gguf}" if ctx.main_gguf else None, context_length=ctx.context_length,
        memory_fraction=ctx.memory_fraction, quantization=ctx.quantization,
        api_key_file=API_KEY_PATH if keyed else None, extra_args=ctx.extra_args, extra_env=ctx.extra_env,
        custom=ctx.custom,
    )
    entry, args, env = _strings(build_invocation(p, launch))
    mounts: list[tuple[str, str, bool]] = [(f"{host.prefix}/{ctx.model_subdir}", MODELS, True)]
    if p.ollama_import:
        mounts += [(f"{host.prefix}/deploy/ollama/Modelfile", MODELFILE_PATH, True),
                   (f"{name}-ollama", "/root/.ollama", False)]
    if host.api_key_file:
        mounts.append((host.api_key_file, API_KEY_PATH, True))
    health_path = ctx.custom.health_path if ctx.custom else p.health_path
    probe = health_argv(p, f"{base_url(listen if hostnet else '127.0.0.1', port)}{health_path}",
                        ctx.served_name, ctx.custom)
    shm = p.shm_gib if p.shm_gib and (p.shm_always or launch.tensor_parallel != 1) else None
    labels = ((LABEL_BUNDLE, ctx.name), (LABEL_VERSION, ctx.version), (LABEL_PREFIX, host.prefix),
              (LABEL_DIGEST, digest))
    return ContainerSpec(
        name=name, image=image_id, entrypoint=entry, command=args, environment=env, network=host.network,
        bind=host.bind, port=host.port, container_port=inner_port, mounts=tuple(mounts), gpus=host.gpus,
        shm_gib=shm, labels=labels, health_path=health_path,
        health_cmd=tuple(str(a) for a in probe) if probe else None,
        start_period_s=max(ctx.start_period_s or 0, p.start_period_s),
        read_only=p.read_only_root, tmpfs=hardening.scratch_dirs(p), cap_add=hardening.cap_add(port),
    )


# ---- calls on the engine -------------------------------------------------------------------------------------


def docker_errors() -> tuple[type[Exception], ...]:
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    return (docker.errors.DockerException, requests.RequestException)


def connect(client: Any = None) -> Any:
    """The given client, or one from the environment (``DOCKER_HOST``)."""
    if client is not None:
        return client
    import docker  # noqa: PLC0415

    try:
        return docker.from_env(timeout=120)
    except docker.errors.DockerException as exc:
        raise InstallError(f"cannot reach the Docker engine ({exc})",
                           hint="start it, or set DOCKER_HOST; 'airpack doctor' checks this") from None


def start(client: Any, spec: ContainerSpec) -> str:
    """Create and start the container; returns its ID."""
    try:
        return str(client.containers.run(**spec.run_kwargs()).id)
    except docker_errors() as exc:
        remove(client, spec.name)
        raise InstallError(f"starting container {spec.name} failed: {exc}") from None


def remove(client: Any, ref: str) -> bool:
    """Stop and remove a container by ID or name; False when there was none."""
    import docker.errors  # noqa: PLC0415

    try:
        container = client.containers.get(ref)
    except docker.errors.NotFound:
        return False
    try:
        container.remove(force=True, v=False)
    except docker.errors.NotFound:
        return False
    except docker_errors() as exc:
        raise InstallError(f"removing container {ref} failed: {exc}") from None
    return True


def containers_for(client: Any, prefix: str) -> list[str]:
    """IDs of every container (running or not) that airpack started for ``prefix``."""
    found = client.containers.list(all=True, filters={"label": f"{LABEL_PREFIX}={prefix}"})
    return [str(c.id) for c in found]


def state(client: Any, ref: str) -> dict[str, Any] | None:
    """``{"status", "exitCode", "restarts", "image"}`` of a container, or None when it is gone."""
    import docker.errors  # noqa: PLC0415

    try:
        attrs = client.api.inspect_container(ref)
    except docker.errors.NotFound:
        return None
    st = attrs.get("State") or {}
    return {"status": str(st.get("Status", "")), "exitCode": st.get("ExitCode"),
            "restarts": int(attrs.get("RestartCount") or 0), "image": str(attrs.get("Image", "")),
            "health": (st.get("Health") or {}).get("Status")}


def exited(client: Any, ref: str) -> str | None:
    """Why the container is not running any more, or None while it runs (a restart counts as a crash)."""
    st = state(client, ref)
    if st is None:
        return "the container is gone"
    if st["status"] in ("exited", "dead") or st["restarts"] > 0 or st["status"] == "restarting":
        return f"the engine exited (code {st['exitCode']}, {st['restarts']} restart(s))"
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def last_logs(client: Any, ref: str, lines: int = 20) -> list[str]:
    """The container's last log lines (stdout and stderr), best effort."""
    try:
        raw = client.api.logs(ref, stdout=True, stderr=True, tail=lines)
    except docker_errors():
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return [_ANSI.sub("", line) for line in text.splitlines() if line.strip()][-lines:]
