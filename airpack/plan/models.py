"""The planner's inputs and outputs: a request (what the target looks like) and a plan (what the model needs there)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airpack.errors import UsageError
from airpack.plan.engines import KV_DTYPE_BYTES
from airpack.plan.gpus import GpuInfo
from airpack.profiles import ENGINES

STATUSES = ("pass", "warn", "fail")
_DRIVER = re.compile(r"^\d{3,4}(\.\d{1,3}){0,2}$")
_CUDA = re.compile(r"^\d{1,2}\.\d{1,2}(\.\d{1,3})?$")


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class PlanRequest:
    """The target: engine, GPUs and workload.

    ``gpus=0`` plans against host RAM (llama.cpp/Ollama on CPU) and then ``vram_bytes_per_gpu`` is the RAM to
    use. ``vram_bytes_per_gpu`` otherwise overrides the memory of ``gpu``. ``context`` is tokens per sequence
    (None: the engine's default, usually the model's trained context); ``concurrency`` sequences each hold a full
    context. ``memory_fraction`` overrides the engine's budget share (vLLM gpu_memory_utilization, SGLang
    mem_fraction_static, TGI cuda_memory_fraction). ``driver`` is the target's NVIDIA driver ("535.104.05");
    ``image_cuda`` the CUDA toolkit of the serving image ("12.4.1").
    """

    engine: str | None = None
    gpus: int = 1
    gpu: GpuInfo | None = None
    vram_bytes_per_gpu: int | None = None
    context: int | None = None
    concurrency: int = 1
    kv_dtype: str = "auto"
    tensor_parallel: int | None = None
    memory_fraction: float | None = None
    driver: str | None = None
    image_cuda: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.engine is not None and self.engine not in ENGINES:
            problems.append(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.gpus < 0:
            problems.append("gpus must be 0 (host RAM) or more")
        if self.vram_bytes_per_gpu is not None and self.vram_bytes_per_gpu <= 0:
            problems.append("vram must be positive")
        if self.vram_bytes_per_gpu is None and (self.gpus == 0 or self.gpu is None):
            problems.append(
                "with gpus=0 give the host RAM as vram_bytes_per_gpu (--vram)"
                if self.gpus == 0
                else "name the GPU (--gpu) or give its memory (--vram)"
            )
        if self.context is not None and self.context < 1:
            problems.append("context must be at least 1 token")
        if self.concurrency < 1:
            problems.append("concurrency must be at least 1")
        if self.tensor_parallel is not None and self.tensor_parallel < 1:
            problems.append("tensor_parallel must be at least 1")
        if self.memory_fraction is not None and not 0 < self.memory_fraction <= 1:
            problems.append("memory_fraction must be in (0, 1]")
        if self.kv_dtype.lower() != "auto" and self.kv_dtype.lower() not in KV_DTYPE_BYTES:
            problems.append(f"unknown KV cache dtype {self.kv_dtype!r}")
        if self.driver is not None and not _DRIVER.match(self.driver):
            problems.append(f"driver version {self.driver!r} is not like 535.104.05")
        if self.image_cuda is not None and not _CUDA.match(self.image_cuda):
            problems.append(f"image CUDA version {self.image_cuda!r} is not like 12.4 or 12.4.1")
        if problems:
            raise UsageError(f"bad plan request: {'; '.join(problems)}")

    @property
    def host(self) -> bool:
        return self.gpus == 0

    @property
    def device_bytes(self) -> int:
        """Memory of one device (a GPU, or the host with gpus=0)."""
        if self.vram_bytes_per_gpu is not None:
            return self.vram_bytes_per_gpu
        assert self.gpu is not None  # noqa: S101 - guaranteed by __post_init__
        return self.gpu.vram_bytes


@dataclass(frozen=True)
class Check:
    """One compatibility finding. ``message`` says what is wrong and what would work instead."""

    name: str
    status: str
    message: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status must be one of {STATUSES}, not {self.status!r}")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message}


@dataclass(frozen=True)
class MemoryBudget:
    """One device's share: every GPU in a plan gets the same (tensor parallel and layer split are even)."""

    device_bytes: int
    available_bytes: int
    weights_bytes: int
    kv_bytes: int
    overhead_bytes: int
    required_bytes: int

    def to_dict(self) -> dict[str, int]:
        return {
            "device_bytes": self.device_bytes,
            "available_bytes": self.available_bytes,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "overhead_bytes": self.overhead_bytes,
            "required_bytes": self.required_bytes,
        }


@dataclass(frozen=True)
class Plan:
    """What the model needs on the target, in bytes, and whether it fits.

    Totals are summed over the ``devices`` that hold the model (the GPUs in the tensor-parallel group or layer
    split, or the host). ``kv_bytes_per_token`` is what one token costs across all attention layers;
    past ``sliding_window`` tokens only ``kv_full_bytes_per_token`` keeps growing. ``fits`` is about memory only;
    ``ok`` also requires that no check failed.
    """

    engine: str
    device: str  # "gpu" | "host"
    gpu: str | None
    gpus: int
    devices: int
    tensor_parallel: int
    context: int
    concurrency: int
    kv_dtype: str
    memory_fraction: float
    weight_format: str
    quantization: str
    weights_bytes: int
    kv_bytes_per_token: int
    kv_full_bytes_per_token: int
    sliding_window: int | None
    kv_bytes: int
    overhead_bytes: int
    required_bytes: int
    available_bytes: int
    fits: bool
    max_context: int
    model_max_context: int | None
    per_gpu: MemoryBudget
    checks: tuple[Check, ...]
    architecture: str | None = None  # the model's, as its config or GGUF metadata names it
    param_count: int | None = None  # None: not known (packed quantized tensors)

    @property
    def ok(self) -> bool:
        return self.fits and not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "device": self.device,
            "gpu": self.gpu,
            "gpus": self.gpus,
            "devices": self.devices,
            "tensor_parallel": self.tensor_parallel,
            "context": self.context,
            "concurrency": self.concurrency,
            "kv_dtype": self.kv_dtype,
            "memory_fraction": self.memory_fraction,
            "weight_format": self.weight_format,
            "quantization": self.quantization,
            "weights_bytes": self.weights_bytes,
            "kv_bytes_per_token": self.kv_bytes_per_token,
            "kv_full_bytes_per_token": self.kv_full_bytes_per_token,
            "sliding_window": self.sliding_window,
            "kv_bytes": self.kv_bytes,
            "overhead_bytes": self.overhead_bytes,
            "required_bytes": self.required_bytes,
            "available_bytes": self.available_bytes,
            "fits": self.fits,
            "ok": self.ok,
            "max_context": self.max_context,
            "model_max_context": self.model_max_context,
            "per_gpu": self.per_gpu.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "architecture": self.architecture,
            "param_count": self.param_count,
        }
