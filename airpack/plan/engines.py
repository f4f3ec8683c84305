"""What each serving engine adds on top of weights and KV cache, and how it lays a model across GPUs.

Figures come from the engines' own logs and sources (field notes, runtimes-and-vram.md §1 and §2); each constant
says where it comes from. Overheads are per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from airpack.errors import UsageError
from airpack.plan.facts import ModelFacts
from airpack.plan.gpus import GIB, MIB

TP_ENGINES = frozenset({"vllm", "tgi", "sglang"})  # tensor parallel: heads are split across GPUs
GGUF_ENGINES = frozenset({"llamacpp", "ollama"})  # split by layer; run on CPU too

# KV cache element sizes. GGML block types carry a scale per 32 values (q8_0: 34 bytes per 32 values).
KV_DTYPE_BYTES: dict[str, Fraction] = {
    "fp16": Fraction(2),
    "f16": Fraction(2),
    "bf16": Fraction(2),
    "fp32": Fraction(4),
    "f32": Fraction(4),
    "fp8": Fraction(1),
    "fp8_e4m3": Fraction(1),
    "fp8_e5m2": Fraction(1),
    "fp8_e4m3fn": Fraction(1),
    "q8_0": Fraction(34, 32),
    "q5_1": Fraction(24, 32),
    "q5_0": Fraction(22, 32),
    "q4_1": Fraction(20, 32),
    "q4_0": Fraction(18, 32),
    "iq4_nl": Fraction(18, 32),
}

# KV cache dtypes each engine accepts (vLLM --kv-cache-dtype, TGI --kv-cache-dtype, llama.cpp -ctk/-ctv,
# OLLAMA_KV_CACHE_TYPE). "auto" is the engine default: the model dtype, or f16 for GGUF engines.
ENGINE_KV_DTYPES: dict[str, frozenset[str]] = {
    "vllm": frozenset({"auto", "fp16", "bf16", "fp8", "fp8_e4m3", "fp8_e5m2"}),
    "sglang": frozenset({"auto", "fp16", "bf16", "fp8", "fp8_e4m3", "fp8_e5m2"}),
    "tgi": frozenset({"auto", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"}),
    "llamacpp": frozenset(
        {"auto", "f16", "fp16", "bf16", "f32", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}
    ),
    "ollama": frozenset({"auto", "f16", "fp16", "q8_0", "q4_0"}),
    "custom": frozenset(KV_DTYPE_BYTES) | {"auto"},
}


@dataclass(frozen=True)
class EngineProfile:
    """Memory behaviour of one engine.

    ``fraction`` is the default share of each GPU's memory the engine budgets (vLLM gpu_memory_utilization,
    SGLang mem_fraction_static, TGI cuda_memory_fraction). When ``overhead_in_budget`` is false the budget holds
    only weights and KV cache (SGLang) and the overhead must fit in what is left of the GPU.
    """

    name: str
    fraction: float
    overhead_in_budget: bool
    non_torch_bytes: int  # CUDA context, cuBLAS workspaces, allocator slack (TP=1)
    non_torch_bytes_tp: int  # the same with NCCL and custom all-reduce buffers (TP>1)
    batched_tokens: int  # tokens in the activation-profiling batch
    max_seqs: int
    gguf_style: bool  # llama.cpp compute-buffer model instead of the vLLM profile model
    fit_margin_bytes: int = 0


# vLLM on H100, Llama-3.1-8B (vllm#10511): non_torch 1.79 GiB at TP=1, 3.58 GiB at TP=2; activation peak 1.26 GiB
# with the default max_num_batched_tokens. gpu_memory_utilization is 0.9 (0.92 in 2026 releases, §0.5): airpack
# profiles pass it explicitly, so the CLI should hand the profile's value in as PlanRequest.memory_fraction.
_VLLM = EngineProfile("vllm", 0.90, True, int(1.79 * GIB), int(3.58 * GIB), 8192, 256, gguf_style=False)
# TGI: --cuda-memory-fraction defaults to 1.0; prefill batch (--max-batch-prefill-tokens) defaults to 4096. The
# non-torch figure is vLLM's, on the assumption [I] that the same CUDA/NCCL libraries cost the same.
_TGI = EngineProfile("tgi", 1.0, True, int(1.79 * GIB), int(3.58 * GIB), 4096, 256, gguf_style=False)
# SGLang: --mem-fraction-static (weights + KV pool) is chosen from GPU size when unset; 0.85 is an assumption [I].
# Activations and CUDA graphs live outside that fraction.
_SGLANG = EngineProfile("sglang", 0.85, False, int(1.79 * GIB), int(3.58 * GIB), 8192, 256, gguf_style=False)
# llama.cpp: compute buffer 0.1-0.3 GiB for 7-8B models at ubatch 512, "unaccounted" CUDA context 0.3-0.6 GiB,
# and --fit leaves 1024 MiB free per device (§2.1, §2.2).
_LLAMACPP = EngineProfile(
    "llamacpp", 1.0, True, 512 * MIB, 512 * MIB, 512, 1, gguf_style=True, fit_margin_bytes=GIB
)
# Ollama runs llama.cpp's engine without --fit; OLLAMA_GPU_OVERHEAD defaults to 0.
_OLLAMA = EngineProfile("ollama", 1.0, True, 512 * MIB, 512 * MIB, 512, 1, gguf_style=True)
# Anything else: vLLM-like costs with 10% headroom.
_CUSTOM = EngineProfile("custom", 0.90, True, int(1.79 * GIB), int(3.58 * GIB), 8192, 256, gguf_style=False)

PROFILES: dict[str, EngineProfile] = {p.name: p for p in (_VLLM, _TGI, _SGLANG, _LLAMACPP, _OLLAMA, _CUSTOM)}


def resolve_engine(facts: ModelFacts, engine: str | None) -> str:
    """The engine to plan for: the requested one, or the natural one for the weight format."""
    if engine is not None:
        return engine
    return "llamacpp" if facts.is_gguf else "vllm"


def resolve_kv_dtype(facts: ModelFacts, engine: str, kv_dtype: str) -> tuple[str, Fraction]:
    """The KV cache dtype name and bytes per element for ``engine``; "auto" follows the engine's default."""
    kv = kv_dtype.lower()
    allowed = ENGINE_KV_DTYPES[engine]
    if kv not in allowed:
        raise UsageError(
            f"KV cache dtype {kv_dtype!r} is not available on {engine}",
            hint=f"choose one of: {', '.join(sorted(allowed))}",
        )
    if kv == "auto":
        if engine in GGUF_ENGINES or facts.is_gguf:
            kv = "f16"
        else:
            # vLLM/TGI/SGLang "auto": the model dtype; fp32 checkpoints are served in fp16.
            kv = "bf16" if facts.dtype == "bfloat16" else "fp16"
    return kv, KV_DTYPE_BYTES[kv]


def activation_bytes(facts: ModelFacts, profile: EngineProfile, tp: int) -> int:
    """Peak activation / compute-buffer memory per GPU, from the model's widths.

    vLLM model: one profiling batch through the widest layers (MLP gate+up+down and attention projections) plus
    fp32 logits for ``max_seqs`` sequences. It gives 1.28 GiB for Llama-3.1-8B against vLLM's measured 1.26 GiB.
    llama.cpp model: ubatch x (vocab + ffn) fp32 values, 278 MiB for Llama-3-8B against 258-300 MiB in logs.
    """
    hidden = facts.hidden_size or facts.num_attention_heads * facts.head_dim
    ffn = facts.intermediate_size or 4 * hidden
    vocab = facts.vocab_size or 0
    if profile.gguf_style:
        return profile.batched_tokens * (vocab + ffn) * 4
    per_token = (3 * ffn // tp + 6 * hidden) * 2
    return profile.batched_tokens * per_token + profile.max_seqs * (vocab // tp) * 8


def overhead_bytes(facts: ModelFacts, profile: EngineProfile, tp: int, *, host: bool) -> int:
    """Everything per device that is neither weights nor KV cache."""
    non_torch = profile.non_torch_bytes_tp if tp > 1 else profile.non_torch_bytes
    margin = 0 if host else profile.fit_margin_bytes
    return non_torch + activation_bytes(facts, profile, tp) + margin


def kv_split_ok(kv_heads: int, tp: int) -> bool:
    """vLLM's QKV layer: KV heads are split evenly, or replicated evenly when TP exceeds them."""
    return kv_heads % tp == 0 if tp <= kv_heads else tp % kv_heads == 0


def ollama_default_context(total_vram_bytes: int) -> int:
    """Ollama's default context length is tiered by total VRAM (§0.6: server/routes.go)."""
    if total_vram_bytes < 24 * GIB:
        return 4096
    if total_vram_bytes < 48 * GIB:
        return 32768
    return 262144
