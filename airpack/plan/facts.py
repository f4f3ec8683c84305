"""What the planner knows about one model (in its own numbers), and the small value readers every format shares.

``ModelFacts`` is built from metadata alone by the format readers (``plan.safetensors_facts`` with
``plan.hf_config``, ``plan.gguf_facts``); ``plan.inputs`` holds the two entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airpack.errors import SourceError

LFS_POINTER_PREFIX = b"vers"  # "version https://git-lfs…": an un-smudged Git LFS pointer, not a model file


@dataclass(frozen=True)
class Quantization:
    """How the weights are stored, normalized across quantizers.

    ``scheme`` is one of: ``none`` (plain fp16/bf16/fp32), ``awq``, ``gptq``, ``fp8`` (FP8 weights and
    activations, W8A8), ``fp8-weight-only`` (W8A16), ``int8`` (INT8 W8A8), ``w4a16`` (compressed-tensors 4-bit
    weights), ``bitsandbytes``, ``exl2``, ``gguf`` (the GGUF file type is in ``method``) or ``other``.
    """

    scheme: str
    label: str
    method: str | None = None
    bits: int | None = None
    group_size: int | None = None


@dataclass(frozen=True)
class ModelFacts:
    """Everything the planner needs to know about one model variant, in the model's own numbers.

    ``attention_layers`` counts layers that keep a KV cache (hybrid SSM layers do not); ``sliding_layers`` of
    them only keep the last ``sliding_window`` tokens. ``mla_kv_dim`` is set for multi-head latent attention
    (DeepSeek-V2/V3), whose cache is one latent vector per layer instead of K and V per head.
    """

    source: str
    weight_format: str  # "safetensors" | "gguf"
    weights_bytes: int
    quantization: Quantization
    num_layers: int
    attention_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    dtype: str | None = None
    architecture: str | None = None
    param_count: int | None = None
    bytes_by_dtype: tuple[tuple[str, int], ...] = ()
    hidden_size: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    max_context: int | None = None
    sliding_window: int | None = None
    sliding_layers: int = 0
    mla_kv_dim: int | None = None
    gguf_shards: int = 0
    files: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        positive = ("num_layers", "attention_layers", "num_attention_heads", "num_kv_heads", "head_dim")
        problems = [f"{name} must be positive" for name in positive if getattr(self, name) <= 0]
        if self.weights_bytes < 0:
            problems.append("weights_bytes must not be negative")
        if not 0 <= self.sliding_layers <= self.attention_layers:
            problems.append("sliding_layers must be between 0 and attention_layers")
        if self.sliding_layers and not self.sliding_window:
            problems.append("sliding_layers without a sliding_window")
        if problems:
            raise SourceError(f"{self.source}: unusable model facts: {'; '.join(problems)}")

    @property
    def full_attention_layers(self) -> int:
        return self.attention_layers - self.sliding_layers

    @property
    def is_gguf(self) -> bool:
        return self.weight_format == "gguf"

    def summary(self) -> dict[str, Any]:
        """What the lock records of the model itself (``Lock.facts``): the ModelPack config's source."""
        return {"architecture": self.architecture, "param_count": self.param_count,
                "weight_format": self.weight_format, "quantization": self.quantization.label}


def first_of(cfg: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    return None


def pos_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def max_int(value: object) -> int | None:
    if isinstance(value, tuple | list):
        ints = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return pos_int(max(ints)) if ints else None
    return pos_int(value)


def per_layer(value: object, layers: int) -> list[int]:
    if isinstance(value, tuple | list):
        ints = [int(v) for v in value]
        return (ints + [ints[-1] if ints else 0] * layers)[:layers]
    n = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return [n] * layers
