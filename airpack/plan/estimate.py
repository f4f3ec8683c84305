"""The memory arithmetic: weights + KV cache + engine overhead per device, and the longest context that fits.

Pure functions of ModelFacts and PlanRequest: no I/O, no model tables. Formulas follow the field notes
(runtimes-and-vram.md §2.2):

    KV per token = 2 (K and V) x attention layers x KV heads x head_dim x bytes   (GQA-aware; MLA: latent dim)
    sliding-window layers hold min(context, window) tokens
    per GPU, TP = t: weights / t; KV heads ceil(kv_heads / t) (replicated when t > kv_heads); MLA KV replicated
    llama.cpp / Ollama split by layer: weights / n, KV / n
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from airpack.errors import UsageError
from airpack.plan.checks import compatibility_checks
from airpack.plan.engines import (
    GGUF_ENGINES,
    PROFILES,
    TP_ENGINES,
    EngineProfile,
    kv_split_ok,
    ollama_default_context,
    overhead_bytes,
    resolve_engine,
    resolve_kv_dtype,
)
from airpack.plan.facts import ModelFacts
from airpack.plan.gpus import GIB
from airpack.plan.models import Check, MemoryBudget, Plan, PlanRequest

# Without a trained context in the metadata, max_context searches up to this many tokens.
UNBOUNDED_CONTEXT = 1 << 24


def kv_bytes_per_token(facts: ModelFacts, element_bytes: Fraction) -> tuple[int, int]:
    """(full-attention, sliding-window) KV cache bytes per token, over all layers of each kind."""
    if facts.mla_kv_dim:
        per_layer = facts.mla_kv_dim * element_bytes  # one latent vector per layer: no separate K and V
    else:
        per_layer = facts.num_kv_heads * (facts.head_dim + facts.v_head_dim) * element_bytes
    return math.ceil(per_layer * facts.full_attention_layers), math.ceil(per_layer * facts.sliding_layers)


def kv_cache_bytes(facts: ModelFacts, element_bytes: Fraction, context: int, concurrency: int = 1) -> int:
    """KV cache for ``concurrency`` sequences of ``context`` tokens each."""
    full, sliding = kv_bytes_per_token(facts, element_bytes)
    window = min(context, facts.sliding_window) if facts.sliding_window else context
    return (full * context + sliding * window) * concurrency


def device_weights_bytes(facts: ModelFacts, engine: str) -> int:
    """Bytes the weights take once loaded. vLLM, TGI and SGLang load unquantized fp32 tensors in the model's
    16-bit dtype ("auto" serves fp32 checkpoints in fp16), so those take half their file size."""
    if (
        facts.weight_format != "safetensors"
        or engine not in TP_ENGINES
        or facts.quantization.scheme != "none"
    ):
        return facts.weights_bytes
    total = 0
    for dtype, n in facts.bytes_by_dtype:
        total += n // 2 if dtype == "F32" else n // 4 if dtype == "F64" else n
    return total


@dataclass(frozen=True)
class _Layout:
    engine: str
    profile: EngineProfile
    devices: int
    tp: int
    kv_name: str
    kv_element: Fraction
    weights_total: int
    weights_per_device: int
    kv_share: Fraction
    overhead_per_device: int
    device_bytes: int
    available_per_device: int
    fraction: float
    host: bool


def _layout(facts: ModelFacts, req: PlanRequest) -> _Layout:
    engine = resolve_engine(facts, req.engine)
    profile = PROFILES[engine]
    if req.host:
        devices, tp = 1, 1
    elif engine in TP_ENGINES or engine == "custom":
        tp = req.tensor_parallel or req.gpus
        devices = tp
    else:  # llama.cpp / Ollama split layers across every visible GPU
        tp, devices = 1, req.gpus
    kv_name, kv_element = resolve_kv_dtype(facts, engine, req.kv_dtype)
    if facts.mla_kv_dim or devices == 1:
        kv_share = Fraction(1)
    elif engine in GGUF_ENGINES:
        kv_share = Fraction(1, devices)
    else:
        kv_share = Fraction(max(1, -(-facts.num_kv_heads // tp)), facts.num_kv_heads)
    weights_total = device_weights_bytes(facts, engine)
    fraction = (
        req.memory_fraction if req.memory_fraction is not None else (1.0 if req.host else profile.fraction)
    )
    device_bytes = req.device_bytes
    return _Layout(
        engine=engine,
        profile=profile,
        devices=devices,
        tp=tp,
        kv_name=kv_name,
        kv_element=kv_element,
        weights_total=weights_total,
        weights_per_device=-(-weights_total // devices),
        kv_share=kv_share,
        overhead_per_device=overhead_bytes(facts, profile, tp, host=req.host),
        device_bytes=device_bytes,
        available_per_device=int(device_bytes * fraction),
        fraction=fraction,
        host=req.host,
    )


def _kv_per_device(facts: ModelFacts, lay: _Layout, context: int, concurrency: int) -> int:
    return math.ceil(kv_cache_bytes(facts, lay.kv_element, context, concurrency) * lay.kv_share)


def _required(facts: ModelFacts, lay: _Layout, context: int, concurrency: int) -> int:
    """Bytes counted against the budget on one device."""
    inside = lay.overhead_per_device if lay.profile.overhead_in_budget or lay.host else 0
    return lay.weights_per_device + _kv_per_device(facts, lay, context, concurrency) + inside


def _fits(facts: ModelFacts, lay: _Layout, context: int, concurrency: int) -> bool:
    """The budget only: what is counted against it against what it holds. ``fits`` means exactly
    ``required <= available``, so the verdict and its numbers can never disagree; SGLang's second condition
    (its activations beside the budget) is the separate ``memory_fraction`` check."""
    return _required(facts, lay, context, concurrency) <= lay.available_per_device


def _outside_budget_check(lay: _Layout) -> Check | None:
    """SGLang: activations and CUDA graphs live outside mem_fraction_static, in what it leaves of the GPU."""
    if lay.profile.overhead_in_budget or lay.host:
        return None
    left = lay.device_bytes - lay.available_per_device
    where = "each GPU" if lay.devices > 1 else "the GPU"
    need, have = _gib_pair(lay.overhead_per_device, left)
    if lay.overhead_per_device <= left:
        return Check("memory_fraction", "pass", f"activations and CUDA graphs need {need} beside the "
                     f"{lay.fraction:g} budget; {have} of {where} is left for them")
    most = math.floor((1 - lay.overhead_per_device / lay.device_bytes) * 100) / 100
    fix = (f"set runtime.memoryFraction to {most:.2f} or less" if most > 0
           else "use a GPU with more memory or more GPUs")
    return Check("memory_fraction", "fail", f"activations and CUDA graphs need {need} beside the "
                 f"{lay.fraction:g} budget, but only {have} of {where} is left for them: {fix}")


def _max_context(facts: ModelFacts, lay: _Layout, concurrency: int, cap: int) -> int:
    """The largest context (tokens per sequence, at most ``cap``) that fits; 0 when not even one token does."""
    if not _fits(facts, lay, 1, concurrency):
        return 0
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(facts, lay, mid, concurrency):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _default_context(facts: ModelFacts, req: PlanRequest, engine: str) -> int:
    if engine == "ollama":
        tiered = ollama_default_context(0 if req.host else req.device_bytes * req.gpus)
        return min(tiered, facts.max_context) if facts.max_context else tiered
    if facts.max_context is None:
        raise UsageError(
            f"{facts.source}: the model declares no context length", hint="pass --context TOKENS"
        )
    return facts.max_context


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def _gib_pair(a: int, b: int) -> tuple[str, str]:
    """``a`` and ``b`` in GiB with enough digits that different numbers never print the same."""
    for digits in (2, 4, 6):
        x, y = f"{a / GIB:.{digits}f} GiB", f"{b / GIB:.{digits}f} GiB"
        if x != y or a == b:
            return x, y
    return f"{a} bytes", f"{b} bytes"


def _fit_check(facts: ModelFacts, req: PlanRequest, lay: _Layout, context: int, max_context: int) -> Check:
    where = "the host" if lay.host else "each GPU" if lay.devices > 1 else "the GPU"
    required = _required(facts, lay, context, req.concurrency)
    need, usable = _gib_pair(required, lay.available_per_device)
    seqs = f"{context} tokens x {req.concurrency}" if req.concurrency > 1 else f"{context} tokens"
    if _fits(facts, lay, context, req.concurrency):
        return Check(
            "fits",
            "pass",
            f"needs {need} of {usable} usable on {where} at {seqs}; up to {max_context} tokens per sequence fit",
        )
    if max_context > 0:
        return Check(
            "fits",
            "fail",
            f"needs {need} on {where} at {seqs} but {usable} is usable: "
            f"the longest context that fits is {max_context} tokens (--context {max_context}), "
            "or use more GPUs, fewer concurrent sequences or a smaller KV cache dtype",
        )
    # Not even one token fits: what is counted against the budget before any KV cache is already too much.
    inside = lay.overhead_per_device if lay.profile.overhead_in_budget or lay.host else 0
    fixed, usable = _gib_pair(lay.weights_per_device + inside, lay.available_per_device)
    what = (f"weights ({_gib(lay.weights_per_device)}) and engine overhead ({_gib(inside)}) alone need {fixed}"
            if inside else f"the weights alone need {fixed}")
    suggestion = _more_gpus(facts, req, lay)
    return Check(
        "fits",
        "fail",
        f"{what} on {where} but {usable} is usable: {suggestion}choose a smaller quantization",
    )


def _more_gpus(facts: ModelFacts, req: PlanRequest, lay: _Layout) -> str:
    """'use N GPUs or ' when some GPU count up to 16 of the same kind would hold the weights, else ''."""
    if lay.host:
        return ""
    for n in range(req.gpus + 1, 17):
        if lay.engine in TP_ENGINES and (
            facts.num_attention_heads % n or not kv_split_ok(facts.num_kv_heads, n)
        ):
            continue
        bigger = PlanRequest(
            engine=lay.engine,
            gpus=n,
            gpu=req.gpu,
            vram_bytes_per_gpu=req.vram_bytes_per_gpu,
            context=1,
            kv_dtype=req.kv_dtype,
            memory_fraction=req.memory_fraction,
        )
        if _fits(facts, _layout(facts, bigger), 1, 1):
            return f"use {n} GPUs or "
    return ""


def _context_check(facts: ModelFacts, engine: str, context: int) -> Check | None:
    if facts.max_context is None or context <= facts.max_context:
        return None
    if engine in GGUF_ENGINES:
        return Check(
            "context",
            "warn",
            f"context {context} exceeds the model's trained context {facts.max_context}: quality degrades "
            f"past it; use --context {facts.max_context} or less",
        )
    return Check(
        "context",
        "fail",
        f"context {context} exceeds the model's max_position_embeddings {facts.max_context}, which {engine} "
        f"refuses without rope scaling: use --context {facts.max_context} or less",
    )


def plan(facts: ModelFacts, req: PlanRequest) -> Plan:
    """The memory plan and every compatibility check for ``facts`` on the target ``req``. Pure."""
    lay = _layout(facts, req)
    context = req.context if req.context is not None else _default_context(facts, req, lay.engine)
    cap = facts.max_context or max(context, UNBOUNDED_CONTEXT)
    max_context = _max_context(facts, lay, req.concurrency, cap)
    kv_total, kv_sliding = kv_bytes_per_token(facts, lay.kv_element)
    kv_dev = _kv_per_device(facts, lay, context, req.concurrency)
    required_dev = _required(facts, lay, context, req.concurrency)
    fits = _fits(facts, lay, context, req.concurrency)
    checks = list(compatibility_checks(facts, req))
    context_check = _context_check(facts, lay.engine, context)
    if context_check is not None:
        checks.append(context_check)
    checks.append(_fit_check(facts, req, lay, context, max_context))
    if (outside := _outside_budget_check(lay)) is not None:
        checks.append(outside)
    return Plan(
        engine=lay.engine,
        device="host" if lay.host else "gpu",
        gpu=req.gpu.name if req.gpu is not None and not lay.host else None,
        gpus=req.gpus,
        devices=lay.devices,
        tensor_parallel=lay.tp,
        context=context,
        concurrency=req.concurrency,
        kv_dtype=lay.kv_name,
        memory_fraction=lay.fraction,
        weight_format=facts.weight_format,
        quantization=facts.quantization.label,
        weights_bytes=lay.weights_total,
        kv_bytes_per_token=kv_total + kv_sliding,
        kv_full_bytes_per_token=kv_total,
        sliding_window=facts.sliding_window,
        kv_bytes=kv_dev * lay.devices,
        overhead_bytes=lay.overhead_per_device * lay.devices,
        required_bytes=required_dev * lay.devices,
        available_bytes=lay.available_per_device * lay.devices,
        fits=fits,
        max_context=max_context,
        model_max_context=facts.max_context,
        per_gpu=MemoryBudget(
            device_bytes=lay.device_bytes,
            available_bytes=lay.available_per_device,
            weights_bytes=lay.weights_per_device,
            kv_bytes=kv_dev,
            overhead_bytes=lay.overhead_per_device,
            required_bytes=required_dev,
        ),
        checks=tuple(checks),
        architecture=facts.architecture,
        param_count=facts.param_count,
    )
