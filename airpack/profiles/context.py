"""The deploy context: an engine profile applied to one bundle, from its lock — everything stage 1 of
``airpack.render`` needs and what ``profiles.view`` shows the deploy templates. Invariants are checked when built,
so the renderer and the install engine can trust every field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from airpack._fs import path_problem
from airpack.errors import BuildError, SpecError
from airpack.profiles import RuntimeProfile
from airpack.profiles.launch import CustomEngine
from airpack.spec_kubernetes import KubernetesSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_LOCAL_TAG = re.compile(r"^airpack\.local/[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class DeployContext:
    """Everything stage 1 needs, from the lock. Invariants are checked when built."""

    name: str
    version: str
    profile: RuntimeProfile
    image_local: str  # image ID "sha256:…" or "airpack.local/<name>:<version>": what the engine loaded
    image_registry: str  # "repository@sha256:…", prefixed by host.registry for Kubernetes
    model_files: tuple[str, ...]  # relative to the model directory
    served_name: str
    gpus: int = 0  # the spec target's count: the default for host.gpus
    main_gguf: str | None = None
    context_length: int | None = None
    tensor_parallel: int | None = None  # None: the host's GPU count
    memory_fraction: float | None = None
    quantization: str | None = None
    extra_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    custom: CustomEngine | None = None
    start_period_s: int | None = None  # None: the profile's minimum
    image_has_shell: bool = True  # docker --health-cmd runs through /bin/sh
    model_subdir: str = "model"  # weights at <prefix>/<model_subdir> on the host
    model_bytes: int = 0  # sizes the Kubernetes emptyDir or claim the weights are copied into
    model_sha256: tuple[str, ...] = ()  # hex, one per model_files entry: the init-copy container checks them
    replicas: int = 1  # target.replicas: Kubernetes pods, each with host.gpus GPUs
    kubernetes: KubernetesSpec = field(default_factory=KubernetesSpec)  # deploy.kubernetes: weights, placement

    def __post_init__(self) -> None:
        _check_context(self)

    @property
    def slug(self) -> str:
        """A DNS-label form of the name for container, unit and Kubernetes object names."""
        return re.sub(r"[^a-z0-9-]+", "-", self.name.lower()).strip("-")[:40].strip("-")

    @property
    def api_key_refusal(self) -> str | None:
        """Why this runtime cannot require an API key (install needs ``--no-api-key``); None: it can."""
        if self.custom is not None:
            return None if self.custom.api_key_file_flag else "the custom runtime names no api_key_file_flag"
        if self.profile.api_key_supported:
            return None
        return self.profile.no_api_key or f"engine {self.profile.engine} has no API key of its own"


def _check_context(c: DeployContext) -> None:
    p = c.profile
    if not _NAME.match(c.name) or not c.slug:
        raise SpecError(f"name: {c.name!r} must be letters, digits, '.', '_' or '-' (63 at most)")
    if not _VERSION.match(c.version):
        raise SpecError(f"version: {c.version!r} must be letters, digits, '.', '_', '+' or '-'")
    if not (_IMAGE_ID.match(c.image_local) or _LOCAL_TAG.match(c.image_local)) or c.image_local.endswith(
        ":latest"
    ):
        raise BuildError(f"runtime image {c.image_local!r}: need an image ID or an airpack.local/ tag")
    if not _DIGEST_REF.match(c.image_registry):
        raise BuildError(f"image {c.image_registry!r} is not pinned as repository@sha256:<digest>")
    if not c.served_name or _CONTROL.search(c.served_name):
        raise SpecError(f"runtime.servedName: {c.served_name!r} is empty or has control characters")
    for arg in (*c.extra_args, *(v for _, v in c.extra_env)):
        if _CONTROL.search(arg):
            raise SpecError(f"runtime.args/env: {arg!r} has control characters")
    for key, _ in c.extra_env:
        if not _ENV_NAME.match(key):
            raise SpecError(f"runtime.env: {key!r} is not an environment variable name")
    for rel in (*c.model_files, c.model_subdir):
        if problem := path_problem(rel):
            raise BuildError(f"model file {rel!r}: {problem}")
    if not c.model_files:
        raise BuildError("the model has no files to deploy")
    _check_numbers(c)
    _check_engine_fit(c, p)
    if c.model_sha256 and (len(c.model_sha256) != len(c.model_files)
                           or not all(_SHA256_HEX.match(h) for h in c.model_sha256)):
        raise BuildError("the model files' sha256 do not match the model files")
    if not 1 <= c.replicas <= 1000:
        raise SpecError(f"target.replicas: {c.replicas} must be 1-1000")


def _check_numbers(c: DeployContext) -> None:
    if not 0 <= c.gpus <= 64:
        raise SpecError(f"target.gpus: {c.gpus} is not a GPU count (0-64)")
    if c.tensor_parallel is not None and not 1 <= c.tensor_parallel <= 64:
        raise SpecError(f"runtime.tensorParallel: {c.tensor_parallel} must be 1-64")
    if c.context_length is not None and c.context_length < 1:
        raise SpecError(f"runtime.context: {c.context_length} must be positive")
    if c.memory_fraction is not None and not 0 < c.memory_fraction <= 1:
        raise SpecError(f"runtime.memoryFraction: {c.memory_fraction} must be in (0, 1]")
    if c.start_period_s is not None and not 1 <= c.start_period_s <= 86400:
        raise BuildError(f"the health check's start period {c.start_period_s}s must be 1 s to 1 day")


def _check_engine_fit(c: DeployContext, p: RuntimeProfile) -> None:
    if (p.engine == "custom") != (c.custom is not None):
        raise SpecError("runtime: image/command/port/health are given for engine 'custom' and only for it")
    if c.main_gguf is not None and c.main_gguf not in c.model_files:
        raise BuildError(f"main GGUF {c.main_gguf!r} is not among the model files")
    if p.needs_gguf and c.main_gguf is None:
        raise SpecError(f"engine {p.engine!r} serves a GGUF file, and the model has none")
    if p.ollama_import and c.main_gguf and re.search(r"-0*1-of-0*([2-9]|[1-9][0-9]+)\.gguf$", c.main_gguf):
        raise SpecError("Ollama cannot load a split GGUF", hint="merge it with llama-gguf-split --merge")
    suffixes = {Path(f).suffix for f in c.model_files}
    if p.writes_model_dir and ".bin" in suffixes and ".safetensors" not in suffixes:
        raise BuildError(f"{p.writes_model_dir}; the weights are mounted read-only", hint="ship safetensors")
