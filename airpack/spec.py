"""The spec (``airpack.yaml``, schema ``airpack/v1``): parsed and validated at the edge, handed inward frozen.

The whole v1 schema is declared here, including parts later stages implement, so that "unknown key → error"
never has to change. Every error names the key path and what is wrong, with the closest valid word for typos.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airpack._fs import FileTooLarge, read_capped
from airpack.errors import SpecError
from airpack.hashing import sha256_bytes
from airpack.profiles import ENGINES
from airpack.tool import PYTHONS

API_VERSION = "airpack/v1"
DEPLOY_FORMATS = ("compose", "kubernetes", "systemd")  # the deploy file formats rendered into a bundle (airpack.render)
PLATFORMS = ("linux/amd64", "linux/arm64")
MAX_SPEC_BYTES = 1024 * 1024

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# semver 2.0.0, from semver.org's recommended expression
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_DRIVER = re.compile(r"^\d+(\.\d+){0,2}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(GiB|GB|G)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelSpec:
    """``model``: a local folder (``path``) or a Hugging Face repo (``repo`` + ``revision``)."""

    path: str | None = None
    repo: str | None = None
    revision: str = "main"
    files: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    quant: str | None = None
    cache: str | None = None
    allow_pickle: bool = False
    allow_code: bool = False
    signature_key: str | None = None  # model.signature.key: the publisher's OMS public key (PEM), spec-relative
    signature_file: str = "model.sig"  # model.signature.file: the OMS signature in the source


@dataclass(frozen=True)
class RuntimeSpec:
    """``runtime``: the inference engine and how to run it."""

    engine: str
    image: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    port: int | None = None
    health: str | None = None
    served_name: str | None = None
    context: int | None = None
    concurrency: int | None = None
    tensor_parallel: int | None = None
    memory_fraction: float | None = None


@dataclass(frozen=True)
class TargetSpec:
    """``target``: the disconnected host the bundle must fit and run on."""

    gpus: int = 1
    gpu: str | None = None
    vram_gib: float | None = None
    driver: str | None = None
    platform: str = "linux/amd64"
    python: tuple[str, ...] = ()  # CPython versions the bundle's tool/ carries wheels for (empty: 3.11-3.13)


@dataclass(frozen=True)
class DependenciesSpec:
    """``dependencies``: extra images carried in the bundle."""

    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    """A validated ``airpack.yaml``. ``base_dir`` is the folder relative paths are resolved against."""

    name: str
    version: str
    model: ModelSpec
    runtime: RuntimeSpec | None
    target: TargetSpec
    deploy: tuple[str, ...]
    dependencies: DependenciesSpec
    base_dir: Path = field(compare=False)
    source: dict[str, Any] = field(compare=False, repr=False)

    @property
    def model_dir(self) -> Path | None:
        """The local model folder, resolved against the spec's folder."""
        return (self.base_dir / self.model.path) if self.model.path else None

    @property
    def hf_cache_dir(self) -> Path | None:
        """``model.cache``: ``~`` expanded, a relative folder resolved against the spec's folder."""
        if not self.model.cache:
            return None
        return self.base_dir / Path(self.model.cache).expanduser()  # an absolute path replaces base_dir

    def digest(self) -> str:
        """sha256 of the spec's canonical JSON: the lock records it to detect a spec edited after locking."""
        canonical = json.dumps(self.source, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return "sha256:" + sha256_bytes(canonical.encode())


# --------------------------------------------------------------------------------------------- parsing


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        mark = key_node.start_mark
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping used as a key (YAML's '? [a, b]'): unhashable
            raise SpecError(f"line {mark.line + 1}: a key must be a plain word, not {_typename(key)}") from None
        if duplicate:
            raise SpecError(f"line {mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _fail(where: str, what: str) -> SpecError:
    return SpecError(f"{where}: {what}")


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(options)}"


def _check_keys(where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if not isinstance(key, str):
            raise _fail(where or "spec", f"keys must be strings, got {key!r}")
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise _fail(path, "unknown key" + _suggest(key, allowed))


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a mapping, got {_typename(value)}")
    return value


def _typename(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, f"must be a non-empty string, got {_typename(value)}")
    return value


def _int(where: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"must be an integer, got {_typename(value)}")
    if value < minimum:
        raise _fail(where, f"must be >= {minimum}, got {value}")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, got {_typename(value)}")
    return value


def _str_list(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _fail(where, f"must be a list of strings, got {_typename(value)}")
    return tuple(_str(f"{where}[{i}]", v) for i, v in enumerate(value))


def _choice(where: str, value: Any, options: tuple[str, ...]) -> str:
    text = _str(where, value)
    if text not in options:
        raise _fail(where, f"{text!r} is not valid" + _suggest(text, options))
    return text


def _opt(data: Mapping[str, Any], key: str, where: str, conv: Callable[[str, Any], Any]) -> Any:
    return conv(f"{where}.{key}", data[key]) if key in data else None


def _parse_model(data: Mapping[str, Any], base_dir: Path | None) -> ModelSpec:
    w = "model"
    _check_keys(w, data, ("path", "repo", "revision", "files", "exclude", "quant", "cache",
                          "allowPickle", "allowCode", "signature"))
    sig = _mapping(f"{w}.signature", data["signature"]) if "signature" in data else {}
    _check_keys(f"{w}.signature", sig, ("key", "file"))
    if sig and "key" not in sig:
        raise _fail(f"{w}.signature.key", "the publisher's public key (PEM) is required")
    path, repo = _opt(data, "path", w, _str), _opt(data, "repo", w, _str)
    if path and repo:
        raise _fail(w, "give either 'path' (a local folder) or 'repo' (a Hugging Face repo), not both")
    if not path and not repo:
        raise _fail(w, "needs 'path' (a local folder) or 'repo' (a Hugging Face repo id)")
    if path:
        for key in ("revision", "cache"):
            if key in data:
                raise _fail(f"{w}.{key}", "only applies to a Hugging Face 'repo', not a local 'path'")
        folder = base_dir / path if base_dir is not None else None
        if folder is not None and not folder.is_dir():
            raise _fail(f"{w}.path", f"folder {str(folder)!r} does not exist")
    if repo and not re.match(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", repo):
        raise _fail(f"{w}.repo", f"{repo!r} is not a Hugging Face repo id (owner/name)")
    return ModelSpec(
        path=path,
        repo=repo,
        revision=_opt(data, "revision", w, _str) or "main",
        files=_opt(data, "files", w, _str_list) or (),
        exclude=_opt(data, "exclude", w, _str_list) or (),
        quant=_opt(data, "quant", w, _str),
        cache=_opt(data, "cache", w, _str),
        allow_pickle=bool(_opt(data, "allowPickle", w, _bool)),
        allow_code=bool(_opt(data, "allowCode", w, _bool)),
        signature_key=_opt(sig, "key", f"{w}.signature", _str),
        signature_file=_opt(sig, "file", f"{w}.signature", _str) or "model.sig",
    )


def _env(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    items = _mapping(where, value)
    out = []
    for k, v in items.items():
        if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise _fail(where, f"{k!r} is not a valid environment variable name")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _fail(f"{where}.{k}", f"must be a string or number, got {_typename(v)}")
        out.append((k, str(v)))
    return tuple(sorted(out))


def _fraction(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise _fail(where, f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _parse_runtime(data: Mapping[str, Any]) -> RuntimeSpec:
    w = "runtime"
    _check_keys(w, data, ("engine", "image", "args", "env", "command", "port", "health", "servedName",
                          "context", "concurrency", "tensorParallel", "memoryFraction"))
    if "engine" not in data:
        raise _fail(f"{w}.engine", "is required" + _suggest("", ENGINES))
    engine = _choice(f"{w}.engine", data["engine"], ENGINES)
    spec = RuntimeSpec(
        engine=engine,
        image=_opt(data, "image", w, _str),
        args=_opt(data, "args", w, _str_list) or (),
        env=_opt(data, "env", w, _env) or (),
        command=_opt(data, "command", w, _str_list) or (),
        port=_opt(data, "port", w, lambda k, v: _int(k, v, 1)),
        health=_opt(data, "health", w, _str),
        served_name=_opt(data, "servedName", w, _str),
        context=_opt(data, "context", w, lambda k, v: _int(k, v, 1)),
        concurrency=_opt(data, "concurrency", w, lambda k, v: _int(k, v, 1)),
        tensor_parallel=_opt(data, "tensorParallel", w, lambda k, v: _int(k, v, 1)),
        memory_fraction=_opt(data, "memoryFraction", w, _fraction),
    )
    if spec.port is not None and spec.port > 65535:
        raise _fail(f"{w}.port", f"must be a TCP port (1-65535), got {spec.port}")
    if engine == "custom":
        for key in ("image", "port", "health"):
            if key not in data:
                raise _fail(f"{w}.{key}", "is required when engine is 'custom'")
    else:
        for key in ("command", "health"):
            if key in data:
                raise _fail(f"{w}.{key}", f"only applies to engine 'custom' (the {engine} profile knows it)")
    if spec.health is not None and not spec.health.startswith("/"):
        raise _fail(f"{w}.health", f"must be an HTTP path starting with '/', got {spec.health!r}")
    return spec


def _vram(where: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise _fail(where, f"must be GiB per GPU, like 24 or '80GiB', got {value!r}")
    gib = float(m.group(1))
    return gib * (10**9 / 2**30) if (m.group(2) or "").upper() == "GB" else gib


def _parse_target(data: Mapping[str, Any]) -> TargetSpec:
    w = "target"
    _check_keys(w, data, ("gpus", "gpu", "vram", "driver", "platform", "python"))
    driver = _opt(data, "driver", w, lambda k, v: _str(k, str(v) if isinstance(v, int | float) else v))
    if driver is not None and not _DRIVER.match(driver):
        raise _fail(f"{w}.driver", f"must be an NVIDIA driver version like '535.104.05', got {driver!r}")
    gpus = _opt(data, "gpus", w, _int)
    return TargetSpec(
        gpus=1 if gpus is None else gpus,
        gpu=_opt(data, "gpu", w, _str),
        vram_gib=_opt(data, "vram", w, _vram),
        driver=driver,
        platform=_opt(data, "platform", w, lambda k, v: _choice(k, v, PLATFORMS)) or "linux/amd64",
        python=_opt(data, "python", w, _pythons) or (),
    )


def _pythons(where: str, value: Any) -> tuple[str, ...]:
    """``target.python``: CPython versions for the bundle's tool (``["3.12"]``; a YAML 3.12 is read as "3.12")."""
    items = value if isinstance(value, list) else [value]
    out = tuple(sorted({_choice(f"{where}[{i}]", repr(v) if isinstance(v, float) else v, PYTHONS)
                        for i, v in enumerate(items)}))
    if not out:
        raise _fail(where, f"must list at least one of {', '.join(PYTHONS)}")
    return out


def _parse_deploy(value: Any) -> tuple[str, ...]:
    items = _str_list("deploy", value)
    out = []
    for i, item in enumerate(items):
        choice = _choice(f"deploy[{i}]", item, DEPLOY_FORMATS)
        if choice in out:
            raise _fail(f"deploy[{i}]", f"{choice!r} is listed twice")
        out.append(choice)
    return tuple(out)


def parse_spec(data: Any, base_dir: Path, *, check_paths: bool = True) -> Spec:
    """Validate a spec document (already parsed from YAML) and return the frozen ``Spec``.

    ``check_paths=False`` skips checks against the build machine's disk (the model folder), for a spec read
    back from a bundle's manifest on the target host.
    """
    top = _mapping("spec", data)
    _check_keys("", top, ("apiVersion", "name", "version", "model", "runtime", "target", "deploy",
                          "dependencies"))
    for key in ("apiVersion", "name", "version", "model"):
        if key not in top:
            raise _fail(key, "is required")
    if top["apiVersion"] != API_VERSION:
        raise _fail("apiVersion", f"must be {API_VERSION!r}, got {top['apiVersion']!r}")
    name = _str("name", top["name"])
    if not _NAME.match(name):
        raise _fail("name", f"{name!r} must match [a-z0-9][a-z0-9-]* (at most 63 characters)")
    version = _str("version", str(top["version"]) if isinstance(top["version"], int | float) else top["version"])
    if not _SEMVER.match(version):
        raise _fail("version", f"{version!r} is not a semantic version like 1.0.0")
    runtime = _parse_runtime(_mapping("runtime", top["runtime"])) if top.get("runtime") is not None else None
    deps = _mapping("dependencies", top.get("dependencies") or {})
    _check_keys("dependencies", deps, ("images",))
    spec = Spec(
        name=name,
        version=version,
        model=_parse_model(_mapping("model", top["model"]), base_dir if check_paths else None),
        runtime=runtime,
        target=_parse_target(_mapping("target", top.get("target") or {})),
        deploy=_parse_deploy(top["deploy"]) if top.get("deploy") is not None else (),
        dependencies=DependenciesSpec(images=_opt(deps, "images", "dependencies", _str_list) or ()),
        base_dir=base_dir,
        source=json.loads(json.dumps(top, default=str)),
    )
    if spec.deploy and spec.runtime is None:
        raise _fail("deploy", "needs a 'runtime' to deploy (a model-only bundle has no deployment files)")
    return spec


def load_spec(path: Path) -> Spec:
    """Read and validate ``path``; every problem is a ``SpecError`` prefixed with the file name."""
    try:
        raw = read_capped(path, MAX_SPEC_BYTES, follow_symlinks=True)  # a FIFO or /dev/zero must not hang it
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except FileTooLarge:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes; this is not a spec") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror or exc}") from None
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(f"{path}: {where}invalid YAML: {exc.problem}") from None
    except SpecError as exc:
        raise SpecError(f"{path}: {exc.message}") from None
    try:
        return parse_spec(data, path.resolve().parent)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc.message}") from None
