"""Stage-1 template variables and quoting filters: a DeployContext seen by the deploy templates.

Every value that came from the spec or the lock reaches a template through one of the filters below, which quote
it for the file format (YAML, Compose/Kubernetes ``$`` interpolation, systemd) *and* make sure it cannot open a
stage-2 Jinja tag. A :class:`Deferred` value is written as a stage-2 expression; the host parameters it reads are
validated by ``HostParams`` to contain no quote, backslash, ``$``, ``%`` or brace, so they may sit inside quotes.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable
from typing import Any

from airpack.oci.reference import model_repository
from airpack.oci.weights_image import init_copy_command
from airpack.profiles import hardening
from airpack.profiles.context import DeployContext
from airpack.profiles.launch import (
    API_KEY_PATH,
    Concat,
    Deferred,
    Invocation,
    Launch,
    Value,
    build_invocation,
    concat,
    health_argv,
    literal,
)

MODELS_IN_CONTAINER = "/models"
INIT_COPY_DST = "/weights"  # where the init container sees the weights volume

_HOSTNET = 'host.network == "host"'
# The address a probe inside the container's network namespace reaches the engine on.
_PROBE_HOST = (
    f'(("127.0.0.1" if host.bind == "0.0.0.0" else ("::1" if host.bind == "::" else host.bind))'
    f' if {_HOSTNET} else "127.0.0.1")'
)


def _bracketed(expr: str) -> Deferred:
    return Deferred(f'("[" ~ {expr} ~ "]" if ":" in {expr} else {expr})')


BIND_URL = _bracketed("host.bind")
PORT = Deferred("host.port")
PREFIX = Deferred("host.prefix")
API_KEY_FILE = Deferred("host.api_key_file")


def _protect(text: str) -> str:
    """Neutralise '{' so nothing from the spec can start a stage-2 tag."""
    return text.replace("{", '{{ "{" }}')


def _parts(value: Value) -> tuple[str | Deferred, ...]:
    if isinstance(value, bool):
        raise TypeError("booleans have no single spelling across file formats")
    if isinstance(value, Concat):
        return value.parts
    if isinstance(value, Deferred):
        return (value,)
    return (str(value),)


def _quoted(value: Value, inner: Callable[[str], str], quote: str = '"') -> str:
    """``value`` between quotes: literal text escaped by ``inner``, host values as stage-2 expressions.

    Host values are validated by HostParams to hold no quote, backslash, '$', '%' or brace, so they need
    no escaping in any of these formats.
    """
    body = "".join(
        "{{ " + p.expr + " }}" if isinstance(p, Deferred) else _protect(inner(p)) for p in _parts(value)
    )
    return quote + body + quote


def _json_inner(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _systemd_inner(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def yq(value: Value) -> str:
    """A YAML double-quoted scalar (JSON string syntax, which YAML accepts)."""
    return _quoted(value, _json_inner)


def dq(value: Value) -> str:
    """YAML scalar for Compose and Kubernetes command/args/env, where '$' is interpolated: '$$' is a '$'."""
    return _quoted(value, lambda t: _json_inner(t).replace("$", "$$"))


def sd(value: Value) -> str:
    """One double-quoted word of a systemd ExecStart= line ('%' specifiers and '$' variables escaped)."""
    return _quoted(value, lambda t: _systemd_inner(t).replace("$", "$$"))


def sdq(value: Value) -> str:
    """One quoted word of a quadlet Exec=/PodmanArgs=/Environment= key. '$' is left alone: whether quadlet
    escapes it for systemd is unverified [I], so the scripts airpack writes use no "$name" variables."""
    return _quoted(value, _systemd_inner)


def sdraw(value: Value) -> str:
    """A quadlet value taken verbatim (HealthCmd=, Volume=, PublishPort=): only '%' is escaped."""
    return _quoted(value, lambda t: t.replace("%", "%%"), quote="")


def stage2_literal(text: str) -> str:
    """``text`` as a stage-2 Jinja string literal (for fail() messages)."""
    return literal(text)


FILTERS: dict[str, Callable[..., str]] = {
    "yq": yq,
    "dq": dq,
    "sd": sd,
    "sdq": sdq,
    "sdraw": sdraw,
    "s2lit": stage2_literal,
}


def _shell(argv: tuple[Value, ...]) -> Value:
    """argv as one /bin/sh command line (docker --health-cmd); host values need no shell quoting."""
    parts: list[Value] = []
    for i, arg in enumerate(argv):
        parts += [" "] if i else []
        parts += [p if isinstance(p, Deferred) else shlex.quote(p) for p in _parts(arg)]
    return concat(*parts)


def _launch(ctx: DeployContext, host: Value, port: Value, key: bool) -> Launch:
    tp: Value = ctx.tensor_parallel or Deferred("host.gpus if host.gpus > 1 else 1")
    return Launch(
        served_name=ctx.served_name,
        listen_host=host,
        listen_port=port,
        tensor_parallel=tp,
        model_dir=MODELS_IN_CONTAINER,
        model_file=f"{MODELS_IN_CONTAINER}/{ctx.main_gguf}" if ctx.main_gguf else None,
        context_length=ctx.context_length,
        memory_fraction=ctx.memory_fraction,
        quantization=ctx.quantization,
        api_key_file=API_KEY_PATH if key else None,
        extra_args=ctx.extra_args,
        extra_env=ctx.extra_env,
        custom=ctx.custom,
    )


def _pair(ctx: DeployContext, host: Value, port: Value) -> tuple[Invocation, Invocation | None]:
    plain = build_invocation(ctx.profile, _launch(ctx, host, port, key=False))
    keyed = build_invocation(ctx.profile, _launch(ctx, host, port, key=True)) if _key_ok(ctx) else None
    return plain, keyed


def _key_ok(ctx: DeployContext) -> bool:
    if ctx.custom is not None:
        return ctx.custom.api_key_file_flag is not None
    return ctx.profile.api_key_supported


def _shm_mode(ctx: DeployContext) -> str | None:
    if ctx.profile.shm_gib is None:
        return None
    if ctx.profile.shm_always or (ctx.tensor_parallel or 0) > 1:
        return "always"
    return "tp" if ctx.tensor_parallel is None else None


def _init_copy(ctx: DeployContext) -> tuple[str, ...]:
    """The init container's command: copy each model file from the weights image, checking its sha256."""
    if not ctx.model_sha256:  # a context made without the lock's sums (tests of other targets)
        return ()
    return init_copy_command(list(zip(ctx.model_files, ctx.model_sha256, strict=True)), dst=INIT_COPY_DST)


def build(ctx: DeployContext) -> dict[str, Any]:
    """The variables every stage-1 template sees."""
    p = ctx.profile
    port = ctx.custom.port if ctx.custom else p.port
    health_path = ctx.custom.health_path if ctx.custom else p.health_path
    listen_host = Deferred(f'host.bind if {_HOSTNET} else "0.0.0.0"')
    listen_port = Deferred(f"host.port if {_HOSTNET} else {port}")
    probe_url = concat("http://", _bracketed(_PROBE_HOST), ":", listen_port, health_path)
    health = health_argv(p, probe_url, ctx.served_name, ctx.custom)
    k8s_health = health_argv(p, f"http://127.0.0.1:{port}{health_path}", ctx.served_name, ctx.custom)
    inv, inv_key = _pair(ctx, listen_host, listen_port)
    k8s_inv, k8s_inv_key = _pair(ctx, "0.0.0.0", port)  # noqa: S104 - inside the pod
    start_period = max(ctx.start_period_s or 0, p.start_period_s)
    return {
        "ctx": ctx,
        "p": p,
        "slug": ctx.slug,
        "port": port,
        "health_path": health_path,
        "health": health,
        "health_shell": _shell(health) if health and ctx.image_has_shell else None,
        "k8s_health": k8s_health,
        "k8s_exec_probe": p.loading == "lazy" and k8s_health is not None,
        "inv": inv,
        "inv_key": inv_key,
        "k8s_inv": k8s_inv,
        "k8s_inv_key": k8s_inv_key,
        "no_key_message": f"engine {p.engine} cannot require an API key: install without api_key_file",
        "shm": _shm_mode(ctx),
        "start_period": start_period,
        "startup_failures": math.ceil(start_period / 10),
        "pvc_gib": math.ceil(ctx.model_bytes * 1.1 / 2**30) + 1,
        "k8s": ctx.kubernetes,
        "model_repo": model_repository("", ctx.name),  # where airpack push puts the model, under host.registry
        "init_copy_argv": _init_copy(ctx),
        "init_copy_dst": INIT_COPY_DST,
        "models": MODELS_IN_CONTAINER,
        "api_key_path": API_KEY_PATH,
        "model_volume": concat(PREFIX, f"/{ctx.model_subdir}:{MODELS_IN_CONTAINER}:ro"),
        "modelfile_volume": concat(PREFIX, "/deploy/ollama/Modelfile:/airpack/Modelfile:ro"),
        "key_volume": concat(API_KEY_FILE, f":{API_KEY_PATH}:ro"),
        "publish": concat(BIND_URL, ":", PORT, f":{port}"),
        "model_host_dir": concat(PREFIX, f"/{ctx.model_subdir}"),
        "host_expr": lambda name: Deferred(f"host.{name}"),
        # airpack.profiles.hardening: the same confinement in every file
        "read_only": p.read_only_root,
        "scratch": [(f"scratch-{i}", d) for i, d in enumerate(hardening.scratch_dirs(p))],
        "tmpfs_options": hardening.TMPFS_OPTIONS,
        "no_new_privileges": hardening.NO_NEW_PRIVILEGES,
        "low_port": hardening.low_port_expr(port),
        "k8s_cap_add": hardening.cap_add(port),
        "env_word": lambda k, v: concat(k, "=", v),
    }
