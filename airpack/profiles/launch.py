"""Build one engine container's entrypoint, argv and environment from its profile: a pure function.

Values known only at install time (the published port, the bind address, the GPU count) are carried as
:class:`Deferred` Jinja expressions over ``host.*``; the renderer writes them into the bundle's deploy files
for the second rendering stage. Called with plain values instead, the result is a ready-to-run command.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from airpack.errors import SpecError
from airpack.profiles import SERVED_NAME, URL, RuntimeProfile


@dataclass(frozen=True)
class Deferred:
    """A value decided at install: a Jinja expression, written by airpack, that only reads ``host.<param>``."""

    expr: str


@dataclass(frozen=True)
class Concat:
    """A string made of literal text (from the spec, quoted per file format) and Deferred host values."""

    parts: tuple[str | Deferred, ...]


Value = str | int | float | Deferred | Concat

API_KEY_PATH = "/run/airpack-secrets/api-key"  # where the key file is mounted in every container
MODELFILE_PATH = "/airpack/Modelfile"  # Ollama: where the rendered Modelfile is mounted

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def literal(text: str) -> str:
    """``text`` as a Jinja string literal that contains no brace (it may sit inside ``{{ }}``)."""
    return json.dumps(text, ensure_ascii=False).replace("{", "\\u007b").replace("}", "\\u007d")


def concat(*parts: Value) -> Value:
    """Join parts into one string, or into a Concat when any part is decided at install."""
    flat: list[str | Deferred] = []
    for p in parts:
        if isinstance(p, Concat):
            flat += p.parts  # already merged inside; a literal/literal seam here is harmless
        elif isinstance(p, Deferred):
            flat.append(p)
        elif str(p) and flat and isinstance(flat[-1], str):
            flat[-1] += str(p)
        elif str(p):
            flat.append(str(p))
    if all(isinstance(p, str) for p in flat):
        return "".join(str(p) for p in flat)
    return Concat(tuple(flat))


def substitute(template: str, values: dict[str, Value], where: str) -> Value:
    """Replace ``{name}`` placeholders in ``template``; an unknown name is a SpecError naming ``where``."""
    parts: list[Value] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.group(1) not in values:
            raise SpecError(
                f"{where}: unknown placeholder {m.group(0)!r}",
                hint=f"known: {', '.join('{' + k + '}' for k in sorted(values))}",
            )
        parts += [template[pos : m.start()], values[m.group(1)]]
        pos = m.end()
    parts.append(template[pos:])
    return concat(*parts)


@dataclass(frozen=True)
class CustomEngine:
    """What the spec says about an engine airpack has no profile for."""

    command: tuple[str, ...]  # appended to the image entrypoint, like Compose ``command``
    port: int
    health_path: str = "/health"
    health_cmd: tuple[str, ...] | None = None  # in-image probe ({url} allowed); None: polled from outside
    entrypoint: tuple[str, ...] | None = None
    api_key_file_flag: str | None = None


@dataclass(frozen=True)
class Launch:
    """One deployment of an engine, as the container sees it."""

    served_name: str
    listen_host: Value
    listen_port: Value
    tensor_parallel: Value
    model_dir: str = "/models"
    model_file: str | None = None  # in-container path of the main GGUF
    context_length: int | None = None
    memory_fraction: float | None = None
    quantization: str | None = None
    api_key_file: str | None = None  # in-container path; None: no key
    extra_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    custom: CustomEngine | None = None


@dataclass(frozen=True)
class Invocation:
    entrypoint: tuple[Value, ...] | None  # None: the image's own
    args: tuple[Value, ...]
    env: tuple[tuple[str, Value], ...] = field(default=())


def _flag(out: list[Value], flag: str | None, value: Value | None) -> None:
    if flag is not None and value is not None:
        out += [flag, value]


def _placeholders(launch: Launch) -> dict[str, Value]:
    return {
        "model_dir": launch.model_dir,
        "model_file": launch.model_file or "",
        "served_name": launch.served_name,
        "host": launch.listen_host,
        "port": launch.listen_port,
        "context_length": launch.context_length or 0,
        "tensor_parallel": launch.tensor_parallel,
    }


def _merge_env(*groups: tuple[tuple[str, Value], ...]) -> tuple[tuple[str, Value], ...]:
    merged: dict[str, Value] = {}
    for group in groups:
        merged.update(group)
    return tuple(merged.items())


# Ollama serves from its own store: start the server, import the GGUF through the rendered Modelfile (no pull),
# then wait on the server. No "$name" shell variables: systemd would expand them in a unit file.
_OLLAMA_SCRIPT = (
    "/bin/ollama serve & "
    "until /bin/ollama list >/dev/null 2>&1; do kill -0 $! || exit 1; sleep 1; done; "
    f'/bin/ollama create "$1" -f {MODELFILE_PATH} || exit 1; '
    "wait"
)


# python3 -c _PY_KEY_LAUNCH KEY_FILE MODULE FLAG ARGS...: runs MODULE as ``python3 -m MODULE ARGS... FLAG KEY``
# would, with the key read from KEY_FILE into sys.argv only.
_PY_KEY_LAUNCH = (
    "import runpy, sys; "
    "_, path, module, flag, *args = sys.argv; "
    "key = open(path, encoding='utf-8').read().strip(); "
    "sys.argv = [module, *args, flag, key]; "
    "runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


def build_invocation(profile: RuntimeProfile, launch: Launch) -> Invocation:
    """The container entrypoint, arguments and environment for ``launch`` on ``profile``'s engine."""
    args: list[Value] = []
    entrypoint: tuple[Value, ...] | None = profile.entrypoint
    env_listen: tuple[tuple[str, Value], ...] = ()
    if profile.engine == "custom":
        if launch.custom is None:
            raise SpecError("engine 'custom' needs a command, port and health check in the spec")
        ph = _placeholders(launch)
        args += [substitute(a, ph, "runtime.command") for a in launch.custom.command]
        entrypoint = launch.custom.entrypoint
        file_flag = launch.custom.api_key_file_flag
    else:
        ph = _placeholders(launch)
        args += [substitute(a, ph, f"{profile.engine} model argument") for a in profile.model_args]
        _flag(args, profile.served_name_flag, launch.served_name)
        _flag(args, profile.quantization_flag, launch.quantization)
        _flag(args, profile.tp_flag, launch.tensor_parallel)
        _flag(args, profile.context_flag, launch.context_length)
        _flag(args, profile.memory_fraction_flag, launch.memory_fraction)
        _flag(args, profile.host_flag, launch.listen_host)
        _flag(args, profile.port_flag, launch.listen_port)
        if profile.listen_env:
            env_listen = ((profile.listen_env, concat(launch.listen_host, ":", launch.listen_port)),)
        if profile.context_env and launch.context_length is not None:
            env_listen += ((profile.context_env, str(launch.context_length)),)
        file_flag = profile.api_key_file_flag
    args += launch.extra_args
    env = _merge_env(profile.offline_env, env_listen, launch.extra_env)
    if profile.ollama_import:
        return Invocation(("/bin/sh", "-c", _OLLAMA_SCRIPT, "airpack-ollama"), (launch.served_name,), env)
    if launch.api_key_file is None:
        return Invocation(entrypoint, tuple(args), env)
    key = launch.api_key_file
    if file_flag:
        return Invocation(entrypoint, (*args, file_flag, key), env)
    inner = entrypoint or profile.image_entrypoint
    if profile.api_key_env and inner:
        # The key goes through a shell into the engine's environment: never in the deploy files, the argv of
        # `docker run` or the engine's own command line (/proc/PID/cmdline).
        script = f'{profile.api_key_env}="$(cat {key})"; export {profile.api_key_env}; exec "$@"'
        return Invocation(("/bin/sh", "-c", script, "airpack-launch"), (*inner, *args), env)
    if profile.api_key_flag and len(inner) == 3 and inner[1] == "-m" and isinstance(inner[0], str):
        # A Python engine that takes its key only as a flag (SGLang): the flag is added to sys.argv inside the
        # interpreter, which /proc/PID/cmdline never shows: it keeps the argv the process was started with.
        return Invocation((inner[0], "-c", _PY_KEY_LAUNCH, key, inner[2], profile.api_key_flag), tuple(args), env)
    raise SpecError(f"engine {profile.engine!r} cannot require an API key", hint="install without one")


def health_argv(
    profile: RuntimeProfile,
    url: Value,
    served_name: str,
    custom: CustomEngine | None = None,
    override: tuple[str, ...] | None = None,
) -> tuple[Value, ...] | None:
    """The in-container health probe argv, or None when health can only be polled from outside."""
    template = override or (custom.health_cmd if custom else profile.health_cmd)
    if template is None:
        return None
    values: dict[str, Value] = {URL[1:-1]: url, SERVED_NAME[1:-1]: served_name}
    return tuple(substitute(a, values, "health command") for a in template)
