"""Property tests over engines x model sizes x GPUs x workloads: the planner's verdict never contradicts itself.

For every combination: ``fits`` is exactly ``required_bytes <= available_bytes`` (whole plan and per GPU), the
``fits`` check passes exactly when ``fits`` is true, and the numbers its message prints say the same thing (a
pass prints a need no larger than what is usable; a failure a need larger than it). Issue #14 item 12: SGLang
plans said "needs 1.2 GiB on the GPU but 2.0 GiB is usable" and failed anyway.
"""

from __future__ import annotations

import itertools
import re

import pytest

from airpack.errors import UsageError
from airpack.plan import ENGINES, ModelFacts, PlanRequest, plan
from airpack.plan.facts import Quantization
from airpack.plan.gpus import GIB, GPUS

# (name, hidden, layers, heads, kv heads, ffn, vocab, parameters)
SIZES = (
    ("135M", 576, 30, 9, 3, 1536, 49152, 135_000_000),
    ("1B", 2048, 16, 32, 8, 8192, 128256, 1_240_000_000),
    ("8B", 4096, 32, 32, 8, 14336, 128256, 8_030_000_000),
    ("32B", 5120, 64, 40, 8, 27648, 152064, 32_800_000_000),
    ("70B", 8192, 80, 64, 8, 28672, 128256, 70_600_000_000),
    ("405B", 16384, 126, 128, 8, 53248, 128256, 405_000_000_000),
)
FORMATS = {
    "safetensors": (Quantization("none", "bf16"), 2.0),
    "gguf": (Quantization("gguf", "Q4_K_M", method="Q4_K_M", bits=4), 0.6),
}
GPU_COUNTS = (1, 2, 4, 8)
WORKLOADS = ((2048, 1), (32768, 8))  # (context, concurrency)
FRACTIONS = (None, 0.95, 0.5)

_PASS = re.compile(r"needs ([0-9.]+) (GiB|bytes) of ([0-9.]+) (GiB|bytes) usable")
_FAIL = re.compile(r"needs? ([0-9.]+) (GiB|bytes) on .* but ([0-9.]+) (GiB|bytes) is usable")


def facts(size: tuple[str, int, int, int, int, int, int, int], fmt: str) -> ModelFacts:
    name, hidden, layers, heads, kv, ffn, vocab, params = size
    quant, bytes_per_param = FORMATS[fmt]
    return ModelFacts(
        source=f"{name}-{fmt}", weight_format=fmt, weights_bytes=int(params * bytes_per_param),
        quantization=quant, num_layers=layers, attention_layers=layers, num_attention_heads=heads,
        num_kv_heads=kv, head_dim=hidden // heads, v_head_dim=hidden // heads, dtype="bfloat16",
        param_count=params, bytes_by_dtype=(("BF16", int(params * 2)),) if fmt == "safetensors" else (),
        hidden_size=hidden, intermediate_size=ffn, vocab_size=vocab, max_context=131072,
        gguf_shards=1 if fmt == "gguf" else 0,
    )


def _numbers(message: str, pattern: re.Pattern[str]) -> tuple[float, float]:
    m = pattern.search(message)
    assert m, message
    assert m.group(2) == m.group(4), message
    return float(m.group(1)), float(m.group(3))


def assert_consistent(p, where: str) -> None:  # type: ignore[no-untyped-def]
    assert p.fits == (p.required_bytes <= p.available_bytes), where
    assert p.fits == (p.per_gpu.required_bytes <= p.per_gpu.available_bytes), where
    (fit,) = [c for c in p.checks if c.name == "fits"]
    assert (fit.status == "pass") == p.fits, f"{where}: {fit.message}"
    if p.fits:
        need, usable = _numbers(fit.message, _PASS)
        assert need <= usable, f"{where}: {fit.message}"
    else:
        need, usable = _numbers(fit.message, _FAIL)
        assert need > usable, f"{where}: {fit.message}"
    if not p.ok:
        assert any(c.status == "fail" for c in p.checks), where


@pytest.mark.parametrize("engine", ENGINES)
def test_fits_agrees_with_the_numbers_and_the_message(engine: str) -> None:
    plans = 0
    for size, fmt, gpu, gpus, (context, concurrency), fraction in itertools.product(
        SIZES, FORMATS, GPUS, GPU_COUNTS, WORKLOADS, FRACTIONS
    ):
        req = PlanRequest(engine=engine, gpus=gpus, gpu=gpu, context=context, concurrency=concurrency,
                          memory_fraction=fraction)
        p = plan(facts(size, fmt), req)
        assert_consistent(p, f"{engine} {size[0]} {fmt} {gpus}x{gpu.name} ctx={context}x{concurrency} "
                              f"fraction={fraction}")
        plans += 1
    assert plans == len(SIZES) * len(FORMATS) * len(GPUS) * len(GPU_COUNTS) * len(WORKLOADS) * len(FRACTIONS)


@pytest.mark.parametrize("engine", ["llamacpp", "ollama"])
def test_host_ram_plans_agree_too(engine: str) -> None:
    for size, ram_gib, (context, concurrency) in itertools.product(SIZES, (2, 8, 32, 256, 1024), WORKLOADS):
        req = PlanRequest(engine=engine, gpus=0, vram_bytes_per_gpu=ram_gib * GIB, context=context,
                          concurrency=concurrency)
        assert_consistent(plan(facts(size, "gguf"), req), f"{engine} {size[0]} host {ram_gib} GiB")


@pytest.mark.parametrize("vram_gib", [v / 8 for v in range(1, 200)])
def test_sglang_on_any_memory_size(vram_gib: float) -> None:
    """The case that contradicted itself: small models on SGLang, where activations sit outside the budget."""
    for size in SIZES[:3]:
        try:
            p = plan(facts(size, "safetensors"), PlanRequest(engine="sglang", gpus=1,
                                                            vram_bytes_per_gpu=int(vram_gib * GIB), context=2048))
        except UsageError:
            continue
        assert_consistent(p, f"sglang {size[0]} {vram_gib} GiB")
        (outside,) = [c for c in p.checks if c.name == "memory_fraction"]
        left = p.per_gpu.device_bytes - p.per_gpu.available_bytes
        assert (outside.status == "pass") == (p.per_gpu.overhead_bytes <= left), outside.message
        assert p.ok == (p.fits and all(c.status != "fail" for c in p.checks))
