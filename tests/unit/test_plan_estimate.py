"""The memory arithmetic: per-GPU budgets, max context, tensor parallel, host RAM, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plan_helpers import Arch, write_model

from airpack.errors import UsageError
from airpack.plan import (
    ModelFacts,
    PlanRequest,
    lookup_gpu,
    model_facts_from_dir,
    model_facts_from_headers,
    plan,
)
from airpack.plan.engines import PROFILES, activation_bytes
from airpack.plan.gpus import GIB

KIB = 1024


@pytest.fixture(scope="module")
def llama8b(tmp_path_factory: pytest.TempPathFactory) -> ModelFacts:
    arch = Arch()
    return model_facts_from_dir(
        write_model(tmp_path_factory.mktemp("l8b"), arch.config(), arch.plain_tensors())
    )


def test_vllm_kv_budget_on_h100_matches_vllm_profile(llama8b: ModelFacts) -> None:
    """vllm#10511 (H100 80GB, util 0.9): weights 14.96 + non_torch 1.79 + activations 1.26 + KV 53.29 GiB."""
    p = plan(llama8b, PlanRequest(engine="vllm", gpu=lookup_gpu("H100"), context=8192))
    kv_room = p.per_gpu.available_bytes - p.per_gpu.weights_bytes - p.per_gpu.overhead_bytes
    assert kv_room / GIB == pytest.approx(53.29, rel=0.015)
    assert activation_bytes(llama8b, PROFILES["vllm"], 1) / GIB == pytest.approx(1.26, rel=0.03)
    assert p.memory_fraction == 0.9
    assert p.kv_bytes_per_token == 128 * KIB
    assert p.fits
    assert p.max_context == 131072  # capped at the trained context


def test_max_context_is_the_longest_that_fits(llama8b: ModelFacts) -> None:
    l4 = lookup_gpu("L4")
    p = plan(llama8b, PlanRequest(engine="vllm", gpu=l4, context=4096))
    assert p.fits
    assert 4096 < p.max_context < 131072
    at_max = plan(llama8b, PlanRequest(engine="vllm", gpu=l4, context=p.max_context))
    past = plan(llama8b, PlanRequest(engine="vllm", gpu=l4, context=p.max_context + 1))
    assert at_max.fits
    assert not past.fits
    assert at_max.required_bytes <= at_max.available_bytes < past.required_bytes
    # KV room / 128 KiB: what is left after weights and overhead, in tokens
    room = p.per_gpu.available_bytes - p.per_gpu.weights_bytes - p.per_gpu.overhead_bytes
    assert p.max_context == room // (128 * KIB)


def test_default_context_is_the_trained_context_and_failure_names_what_fits(llama8b: ModelFacts) -> None:
    p = plan(llama8b, PlanRequest(engine="vllm", gpu=lookup_gpu("L4")))
    assert p.context == 131072
    assert not p.fits
    assert not p.ok
    fit = next(c for c in p.checks if c.name == "fits")
    assert fit.status == "fail"
    assert f"--context {p.max_context}" in fit.message


def test_concurrency_multiplies_kv(llama8b: ModelFacts) -> None:
    one = plan(llama8b, PlanRequest(gpu=lookup_gpu("L4"), context=2048))
    four = plan(llama8b, PlanRequest(gpu=lookup_gpu("L4"), context=2048, concurrency=4))
    assert four.kv_bytes == 4 * one.kv_bytes == 4 * 2048 * 128 * KIB
    assert four.max_context == one.max_context // 4


def test_tensor_parallel_splits_weights_and_kv_heads(llama8b: ModelFacts) -> None:
    h100 = lookup_gpu("H100")
    tp1 = plan(llama8b, PlanRequest(gpu=h100, gpus=1, context=8192))
    tp2 = plan(llama8b, PlanRequest(gpu=h100, gpus=2, context=8192))
    assert tp2.tensor_parallel == 2
    assert tp2.per_gpu.weights_bytes == tp1.per_gpu.weights_bytes // 2
    assert tp2.per_gpu.kv_bytes == tp1.per_gpu.kv_bytes // 2
    # vllm#10511: non_torch 3.58 GiB at TP=2 (NCCL, custom all-reduce) against 1.79 at TP=1
    assert tp2.per_gpu.overhead_bytes > tp1.per_gpu.overhead_bytes
    assert tp2.available_bytes == 2 * tp1.available_bytes
    # 16-way TP with 8 KV heads: each GPU keeps one head (replicated), not half of one
    tp16 = plan(llama8b, PlanRequest(gpu=h100, gpus=16, context=8192))
    assert tp16.per_gpu.kv_bytes == tp1.per_gpu.kv_bytes // 8


def test_llamacpp_splits_layers_over_gpus() -> None:
    facts = model_facts_from_headers(
        Arch().config(), [{"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}]
    )
    one = plan(facts, PlanRequest(engine="llamacpp", gpu=lookup_gpu("T4"), context=8192))
    three = plan(facts, PlanRequest(engine="llamacpp", gpu=lookup_gpu("T4"), gpus=3, context=8192))
    assert three.devices == 3
    assert three.per_gpu.kv_bytes == -(-one.per_gpu.kv_bytes // 3)


def test_gpus_zero_plans_against_host_ram(tmp_path: Path) -> None:
    arch = Arch(hidden=576, layers=30, heads=9, kv_heads=3, ffn=1536, vocab=49152, max_position=8192)
    facts = model_facts_from_headers(
        arch.config(), [{"w": {"dtype": "BF16", "shape": [134_000_000], "data_offsets": [0, 268_000_000]}}]
    )
    host = plan(facts, PlanRequest(engine="llamacpp", gpus=0, vram_bytes_per_gpu=2 * GIB, context=4096))
    assert host.device == "host"
    assert host.gpu is None
    assert host.memory_fraction == 1.0
    assert host.available_bytes == 2 * GIB
    assert host.fits
    assert (
        host.per_gpu.overhead_bytes
        < plan(
            facts, PlanRequest(engine="llamacpp", gpus=1, vram_bytes_per_gpu=2 * GIB, context=4096)
        ).per_gpu.overhead_bytes
    )  # no --fit margin on the host
    custom = plan(facts, PlanRequest(engine="custom", gpus=0, vram_bytes_per_gpu=2 * GIB, context=4096))
    assert custom.available_bytes == 2 * GIB  # the host budget is all of the given RAM, whatever the engine
    small = plan(facts, PlanRequest(engine="llamacpp", gpus=0, vram_bytes_per_gpu=GIB // 4, context=4096))
    assert not small.fits
    assert small.max_context == 0


def test_fp32_checkpoints_load_in_16_bit_on_vllm(tmp_path: Path) -> None:
    arch = Arch(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=1000)
    facts = model_facts_from_dir(
        write_model(tmp_path / "m", arch.config(torch_dtype="float32"), arch.plain_tensors("F32"))
    )
    req = PlanRequest(engine="vllm", gpu=lookup_gpu("T4"), context=1024)
    assert plan(facts, req).weights_bytes == facts.weights_bytes // 2


def test_request_validation_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--vram"):
        PlanRequest(gpus=0)
    with pytest.raises(UsageError, match="--gpu"):
        PlanRequest(gpus=1)
    with pytest.raises(UsageError, match="engine"):
        PlanRequest(engine="tensorrt", vram_bytes_per_gpu=GIB)
    with pytest.raises(UsageError, match="driver"):
        PlanRequest(vram_bytes_per_gpu=GIB, driver="latest")
    with pytest.raises(UsageError, match="concurrency"):
        PlanRequest(vram_bytes_per_gpu=GIB, concurrency=0)


def test_kv_dtype_follows_engine(llama8b: ModelFacts) -> None:
    h100 = lookup_gpu("H100")
    fp8 = plan(llama8b, PlanRequest(gpu=h100, context=8192, kv_dtype="fp8"))
    assert fp8.kv_bytes_per_token == 64 * KIB
    q8 = plan(llama8b, PlanRequest(engine="custom", gpu=h100, context=8192, kv_dtype="q8_0"))
    assert q8.kv_bytes_per_token == 128 * KIB * 34 // 64
    with pytest.raises(UsageError, match="q4_0"):
        plan(llama8b, PlanRequest(engine="vllm", gpu=h100, context=8192, kv_dtype="q4_0"))


def test_to_dict_is_json_with_the_documented_keys(llama8b: ModelFacts) -> None:
    data = json.loads(
        json.dumps(plan(llama8b, PlanRequest(gpu=lookup_gpu("A100-80GB"), context=8192)).to_dict())
    )
    for key in (
        "weights_bytes",
        "kv_bytes_per_token",
        "required_bytes",
        "available_bytes",
        "fits",
        "max_context",
    ):
        assert key in data
    assert data["fits"] is True
    assert {"name", "status", "message"} <= set(data["checks"][0])
    assert data["per_gpu"]["required_bytes"] == data["required_bytes"]
