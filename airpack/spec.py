"""The spec (``airpack.yaml``, schema ``airpack/v1``): parsed and validated at the edge, handed inward frozen.

The whole v1 schema is declared here, including parts later stages implement, so that "unknown key → error"
never has to change. Every error names the key path and what is wrong, with the closest valid word for typos.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airpack import spec_fields as sf
from airpack._fs import FileTooLarge, read_capped
from airpack.errors import SpecError
from airpack.hashing import sha256_bytes
from airpack.profiles import ENGINES
from airpack.spec_kubernetes import KubernetesSpec, parse_kubernetes
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
    replicas: int = 1  # Kubernetes: pods serving the model, each with ``gpus`` GPUs


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
    kubernetes: KubernetesSpec = field(default_factory=KubernetesSpec)  # deploy.kubernetes

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


def _parse_model(data: Mapping[str, Any], base_dir: Path | None) -> ModelSpec:
    w = "model"
    sf.check_keys(w, data, ("path", "repo", "revision", "files", "exclude", "quant", "cache",
                          "allowPickle", "allowCode", "signature"))
    sig = sf.mapping(f"{w}.signature", data["signature"]) if "signature" in data else {}
    sf.check_keys(f"{w}.signature", sig, ("key", "file"))
    if sig and "key" not in sig:
        raise sf.fail(f"{w}.signature.key", "the publisher's public key (PEM) is required")
    path, repo = sf.opt(data, "path", w, sf.string), sf.opt(data, "repo", w, sf.string)
    if path and repo:
        raise sf.fail(w, "give either 'path' (a local folder) or 'repo' (a Hugging Face repo), not both")
    if not path and not repo:
        raise sf.fail(w, "needs 'path' (a local folder) or 'repo' (a Hugging Face repo id)")
    if path:
        for key in ("revision", "cache"):
            if key in data:
                raise sf.fail(f"{w}.{key}", "only applies to a Hugging Face 'repo', not a local 'path'")
        folder = base_dir / path if base_dir is not None else None
        if folder is not None and not folder.is_dir():
            raise sf.fail(f"{w}.path", f"folder {str(folder)!r} does not exist")
    if repo and not re.match(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", repo):
        raise sf.fail(f"{w}.repo", f"{repo!r} is not a Hugging Face repo id (owner/name)")
    return ModelSpec(
        path=path,
        repo=repo,
        revision=sf.opt(data, "revision", w, sf.string) or "main",
        files=sf.opt(data, "files", w, sf.str_list) or (),
        exclude=sf.opt(data, "exclude", w, sf.str_list) or (),
        quant=sf.opt(data, "quant", w, sf.string),
        cache=sf.opt(data, "cache", w, sf.string),
        allow_pickle=bool(sf.opt(data, "allowPickle", w, sf.boolean)),
        allow_code=bool(sf.opt(data, "allowCode", w, sf.boolean)),
        signature_key=sf.opt(sig, "key", f"{w}.signature", sf.string),
        signature_file=sf.opt(sig, "file", f"{w}.signature", sf.string) or "model.sig",
    )


def _env(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    items = sf.mapping(where, value)
    out = []
    for k, v in items.items():
        if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise sf.fail(where, f"{k!r} is not a valid environment variable name")
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise sf.fail(f"{where}.{k}", f"must be a string or number, got {sf.typename(v)}")
        out.append((k, str(v)))
    return tuple(sorted(out))


def _fraction(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise sf.fail(where, f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _parse_runtime(data: Mapping[str, Any]) -> RuntimeSpec:
    w = "runtime"
    sf.check_keys(w, data, ("engine", "image", "args", "env", "command", "port", "health", "servedName",
                          "context", "concurrency", "tensorParallel", "memoryFraction"))
    if "engine" not in data:
        raise sf.fail(f"{w}.engine", "is required" + sf.suggest("", ENGINES))
    engine = sf.choice(f"{w}.engine", data["engine"], ENGINES)
    spec = RuntimeSpec(
        engine=engine,
        image=sf.opt(data, "image", w, sf.string),
        args=sf.opt(data, "args", w, sf.str_list) or (),
        env=sf.opt(data, "env", w, _env) or (),
        command=sf.opt(data, "command", w, sf.str_list) or (),
        port=sf.opt(data, "port", w, lambda k, v: sf.integer(k, v, 1)),
        health=sf.opt(data, "health", w, sf.string),
        served_name=sf.opt(data, "servedName", w, sf.string),
        context=sf.opt(data, "context", w, lambda k, v: sf.integer(k, v, 1)),
        concurrency=sf.opt(data, "concurrency", w, lambda k, v: sf.integer(k, v, 1)),
        tensor_parallel=sf.opt(data, "tensorParallel", w, lambda k, v: sf.integer(k, v, 1)),
        memory_fraction=sf.opt(data, "memoryFraction", w, _fraction),
    )
    if spec.port is not None and spec.port > 65535:
        raise sf.fail(f"{w}.port", f"must be a TCP port (1-65535), got {spec.port}")
    if engine == "custom":
        for key in ("image", "port", "health"):
            if key not in data:
                raise sf.fail(f"{w}.{key}", "is required when engine is 'custom'")
    else:
        for key in ("command", "health"):
            if key in data:
                raise sf.fail(f"{w}.{key}", f"only applies to engine 'custom' (the {engine} profile knows it)")
    if spec.health is not None and not spec.health.startswith("/"):
        raise sf.fail(f"{w}.health", f"must be an HTTP path starting with '/', got {spec.health!r}")
    return spec


def _vram(where: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise sf.fail(where, f"must be GiB per GPU, like 24 or '80GiB', got {value!r}")
    gib = float(m.group(1))
    return gib * (10**9 / 2**30) if (m.group(2) or "").upper() == "GB" else gib


def _parse_target(data: Mapping[str, Any]) -> TargetSpec:
    w = "target"
    sf.check_keys(w, data, ("gpus", "gpu", "vram", "driver", "platform", "python", "replicas"))
    driver = sf.opt(data, "driver", w, lambda k, v: sf.string(k, str(v) if isinstance(v, int | float) else v))
    if driver is not None and not _DRIVER.match(driver):
        raise sf.fail(f"{w}.driver", f"must be an NVIDIA driver version like '535.104.05', got {driver!r}")
    gpus = sf.opt(data, "gpus", w, sf.integer)
    return TargetSpec(
        gpus=1 if gpus is None else gpus,
        replicas=sf.opt(data, "replicas", w, lambda k, v: _at_most(k, sf.integer(k, v, 1), 1000)) or 1,
        gpu=sf.opt(data, "gpu", w, sf.string),
        vram_gib=sf.opt(data, "vram", w, _vram),
        driver=driver,
        platform=sf.opt(data, "platform", w, lambda k, v: sf.choice(k, v, PLATFORMS)) or "linux/amd64",
        python=sf.opt(data, "python", w, _pythons) or (),
    )


def _pythons(where: str, value: Any) -> tuple[str, ...]:
    """``target.python``: CPython versions for the bundle's tool (``["3.12"]``; a YAML 3.12 is read as "3.12")."""
    items = value if isinstance(value, list) else [value]
    out = tuple(sorted({sf.choice(f"{where}[{i}]", repr(v) if isinstance(v, float) else v, PYTHONS)
                        for i, v in enumerate(items)}))
    if not out:
        raise sf.fail(where, f"must list at least one of {', '.join(PYTHONS)}")
    return out


def _at_most(where: str, value: int, most: int) -> int:
    if value > most:
        raise sf.fail(where, f"must be <= {most}, got {value}")
    return value


def _parse_deploy(value: Any) -> tuple[tuple[str, ...], KubernetesSpec]:
    """A list of formats, or a mapping of format → its options (``kubernetes:`` takes :class:`KubernetesSpec`;
    the others none yet)."""
    if isinstance(value, dict):
        sf.check_keys("deploy", value, DEPLOY_FORMATS)
        for fmt in ("compose", "systemd"):
            if value.get(fmt) not in (None, {}):
                raise sf.fail(f"deploy.{fmt}", f"takes no options yet (write it as '{fmt}: {{}}')")
        k8s = parse_kubernetes("deploy.kubernetes", value["kubernetes"]) if "kubernetes" in value else None
        return tuple(f for f in DEPLOY_FORMATS if f in value), k8s or KubernetesSpec()
    items = sf.str_list("deploy", value)
    out = []
    for i, item in enumerate(items):
        choice = sf.choice(f"deploy[{i}]", item, DEPLOY_FORMATS)
        if choice in out:
            raise sf.fail(f"deploy[{i}]", f"{choice!r} is listed twice")
        out.append(choice)
    return tuple(out), KubernetesSpec()


def parse_spec(data: Any, base_dir: Path, *, check_paths: bool = True) -> Spec:
    """Validate a spec document (already parsed from YAML) and return the frozen ``Spec``.

    ``check_paths=False`` skips checks against the build machine's disk (the model folder), for a spec read
    back from a bundle's manifest on the target host.
    """
    top = sf.mapping("spec", data)
    sf.check_keys("", top, ("apiVersion", "name", "version", "model", "runtime", "target", "deploy",
                          "dependencies"))
    for key in ("apiVersion", "name", "version", "model"):
        if key not in top:
            raise sf.fail(key, "is required")
    if top["apiVersion"] != API_VERSION:
        raise sf.fail("apiVersion", f"must be {API_VERSION!r}, got {top['apiVersion']!r}")
    name = sf.string("name", top["name"])
    if not _NAME.match(name):
        raise sf.fail("name", f"{name!r} must match [a-z0-9][a-z0-9-]* (at most 63 characters)")
    version = sf.string("version", str(top["version"]) if isinstance(top["version"], int | float) else top["version"])
    if not _SEMVER.match(version):
        raise sf.fail("version", f"{version!r} is not a semantic version like 1.0.0")
    runtime = _parse_runtime(sf.mapping("runtime", top["runtime"])) if top.get("runtime") is not None else None
    deps = sf.mapping("dependencies", top.get("dependencies") or {})
    sf.check_keys("dependencies", deps, ("images",))
    deploy, kubernetes = _parse_deploy(top["deploy"]) if top.get("deploy") is not None else ((), KubernetesSpec())
    spec = Spec(
        name=name,
        version=version,
        model=_parse_model(sf.mapping("model", top["model"]), base_dir if check_paths else None),
        runtime=runtime,
        target=_parse_target(sf.mapping("target", top.get("target") or {})),
        deploy=deploy,
        dependencies=DependenciesSpec(images=sf.opt(deps, "images", "dependencies", sf.str_list) or ()),
        base_dir=base_dir,
        source=json.loads(json.dumps(top, default=str)),
        kubernetes=kubernetes,
    )
    if spec.deploy and spec.runtime is None:
        raise sf.fail("deploy", "needs a 'runtime' to deploy (a model-only bundle has no deployment files)")
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
        data = yaml.load(raw.decode("utf-8"), Loader=sf.UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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
