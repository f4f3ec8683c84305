"""Compatibility checks: every check's pass, warn and fail, each with a message that names the way out."""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_helpers import AWQ_QUANT_CONFIG, FP8_QUANT_CONFIG, Arch, gguf_summary

from airpack.plan import (
    Check,
    ModelFacts,
    PlanRequest,
    compatibility_checks,
    lookup_gpu,
    model_facts_from_headers,
    plan,
)
from airpack.plan.gpus import GIB

TENSOR = {"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}


def facts(quant: dict[str, object] | None = None, **config: object) -> ModelFacts:
    return model_facts_from_headers(Arch().config(**config), [TENSOR], quant_config=quant)


def gguf(shards: int = 1) -> ModelFacts:
    extra = {"split.count": shards}
    files = [gguf_summary(f"m-{i + 1:05d}-of-{shards:05d}.gguf", 15, 10**9, extra={**extra, "split.no": i})
             for i in range(shards)]  # fmt: skip
    return model_facts_from_headers(None, (), files)


def check(f: ModelFacts, name: str, **req: object) -> Check:
    req.setdefault("vram_bytes_per_gpu", 80 * GIB)
    gpu = req.pop("gpu", None)
    request = PlanRequest(gpu=lookup_gpu(str(gpu)) if gpu else None, **req)  # type: ignore[arg-type]
    found = [c for c in compatibility_checks(f, request) if c.name == name]
    assert len(found) == 1, f"no single {name!r} check in {compatibility_checks(f, request)}"
    return found[0]


# ---- weight format vs engine


@pytest.mark.parametrize("engine", ["vllm", "tgi", "sglang"])
def test_format_safetensors_runs_on_hf_engines(engine: str) -> None:
    assert check(facts(), "format", engine=engine).status == "pass"
    assert check(facts(AWQ_QUANT_CONFIG), "format", engine=engine).status == "pass"
    assert check(facts(FP8_QUANT_CONFIG), "format", engine=engine).status == "pass"


@pytest.mark.parametrize("engine", ["llamacpp", "ollama"])
def test_format_safetensors_fails_on_gguf_engines(engine: str) -> None:
    plain = check(facts(), "format", engine=engine)
    assert plain.status == "fail"
    assert "GGUF" in plain.message
    awq = check(facts(AWQ_QUANT_CONFIG), "format", engine=engine)
    assert awq.status == "fail"
    assert "vLLM, TGI or SGLang" in awq.message


@pytest.mark.parametrize(("engine", "status"), [("llamacpp", "pass"), ("ollama", "pass"), ("vllm", "fail"),
                                                ("tgi", "fail"), ("sglang", "fail")])  # fmt: skip
def test_format_gguf_needs_llamacpp_or_ollama(engine: str, status: str) -> None:
    c = check(gguf(), "format", engine=engine)
    assert c.status == status
    if status == "fail":
        assert "llama.cpp or Ollama" in c.message


def test_format_split_gguf_fails_on_ollama_only() -> None:
    split = gguf(shards=2)
    assert split.gguf_shards == 2
    assert check(split, "format", engine="llamacpp").status == "pass"
    c = check(split, "format", engine="ollama")
    assert c.status == "fail"
    assert "llama-gguf-split --merge" in c.message


def test_format_engine_defaults_to_the_formats_engine() -> None:
    assert plan(gguf(), PlanRequest(vram_bytes_per_gpu=80 * GIB, context=4096)).engine == "llamacpp"
    assert plan(facts(), PlanRequest(vram_bytes_per_gpu=80 * GIB, context=4096)).engine == "vllm"


# ---- quantization and dtype vs compute capability


@pytest.mark.parametrize(("gpu", "status"), [("H100", "pass"), ("L4", "pass"), ("A100-80GB", "warn"),
                                             ("A10G", "warn"), ("T4", "fail"), ("V100", "fail")])  # fmt: skip
def test_fp8_w8a8_needs_89_and_runs_weight_only_on_ampere(gpu: str, status: str) -> None:
    c = check(facts(FP8_QUANT_CONFIG), "quantization", engine="vllm", gpu=gpu)
    assert c.status == status
    if status == "warn":
        assert "Marlin" in c.message
    if status == "fail":
        assert "AWQ" in c.message


def test_fp8_weight_only_runs_on_ampere() -> None:
    w8a16 = {**FP8_QUANT_CONFIG, "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}}
    f = facts(w8a16)
    assert f.quantization.scheme == "fp8-weight-only"
    assert check(f, "quantization", engine="vllm", gpu="A100-80GB").status == "pass"
    assert check(f, "quantization", engine="vllm", gpu="T4").status == "fail"


@pytest.mark.parametrize(("gpu", "status"), [("T4", "pass"), ("A10G", "pass"), ("V100", "fail")])
def test_awq_needs_turing(gpu: str, status: str) -> None:
    c = check(facts(AWQ_QUANT_CONFIG), "quantization", engine="tgi", gpu=gpu)
    assert c.status == status
    if status == "fail":
        assert "7.5" in c.message
        assert "GPTQ" in c.message


def test_quantization_without_a_gpu_name_warns() -> None:
    c = check(facts(AWQ_QUANT_CONFIG), "quantization", engine="vllm")
    assert c.status == "warn"
    assert "--gpu" in c.message


def test_bf16_below_ampere_is_cast_to_fp16_with_a_warning() -> None:
    c = check(facts(), "dtype", engine="vllm", gpu="T4")
    assert c.status == "warn"
    assert "float16" in c.message
    assert check(facts(), "dtype", engine="vllm", gpu="A10G").status == "pass"
    assert check(facts(torch_dtype="float16"), "dtype", engine="vllm", gpu="T4").status == "pass"


def test_engine_gpu_floors() -> None:
    assert check(facts(torch_dtype="float16"), "engine_gpu", engine="vllm", gpu="V100").status == "fail"
    assert check(facts(), "engine_gpu", engine="vllm", gpu="T4").status == "pass"
    assert check(facts(), "engine_gpu", engine="tgi", gpu="T4").status == "warn"
    host = check(facts(), "engine_gpu", engine="vllm", gpus=0)
    assert host.status == "fail"
    assert "llama.cpp" in host.message
    assert check(gguf(), "engine_gpu", engine="llamacpp", gpus=0).status == "pass"


# ---- tensor parallel


def test_tensor_parallel_must_divide_heads_and_fit_the_gpus() -> None:
    f = facts()  # 32 heads, 8 KV heads
    assert check(f, "tensor_parallel", engine="vllm", gpus=4).status == "pass"
    three = check(f, "tensor_parallel", engine="vllm", gpus=3)
    assert three.status == "fail"
    assert "does not divide the 32 attention heads" in three.message
    assert "1, 2" in three.message
    too_many = check(f, "tensor_parallel", engine="sglang", gpus=4, tensor_parallel=8)
    assert too_many.status == "fail"
    assert "more than the 4 GPU(s)" in too_many.message
    assert check(f, "tensor_parallel", engine="tgi", gpus=4, tensor_parallel=2).status == "warn"
    assert check(f, "tensor_parallel", engine="llamacpp", gpus=3).status == "pass"


def test_tensor_parallel_rejects_uneven_kv_head_split() -> None:
    f = facts(num_attention_heads=48, num_key_value_heads=8, head_dim=128)  # 48 heads, 8 KV heads
    c = check(f, "tensor_parallel", engine="vllm", gpus=6)
    assert c.status == "fail"
    assert "8 KV heads" in c.message


# ---- driver vs image CUDA


@pytest.mark.parametrize(
    ("engine", "image_cuda", "driver", "gpu", "status", "needle"),
    [
        ("vllm", "12.9.1", "575.57.08", "H100", "pass", "575.51.3"),
        ("vllm", "12.9.1", "580.95.05", "RTX-4090", "pass", ""),
        ("vllm", "12.9.1", "550.54.15", "H100", "warn", "forward-compatibility"),
        ("vllm", "12.9.1", "550.54.15", "RTX-4090", "fail", "not a datacenter GPU"),
        ("llamacpp", "12.8.1", "535.104.05", None, "warn", "--gpu"),
        ("tgi", "12.4.0", "470.82.01", "A100-80GB", "fail", "525.60.13"),
        ("vllm", "13.0", "570.124.06", "H100", "warn", "VLLM_ENABLE_CUDA_COMPATIBILITY=1"),
        ("vllm", "13.0", "570.124.06", "RTX-4090", "fail", "-cu129"),
        ("sglang", "13.0", "570.124.06", "H100", "fail", "v0.5.19-cu129"),
        ("sglang", "13.0.2", "580.65.06", "RTX-4090", "pass", ""),
        ("ollama", None, "545.23.08", "L4", "fail", "CPU"),
        ("ollama", None, "550.54.15", "L4", "pass", ""),
    ],
)
def test_driver_vs_image_cuda(
    engine: str, image_cuda: str | None, driver: str, gpu: str | None, status: str, needle: str
) -> None:
    f = gguf() if engine in ("llamacpp", "ollama") else facts()
    c = check(f, "driver", engine=engine, image_cuda=image_cuda, driver=driver, gpu=gpu)
    assert c.status == status, c.message
    assert needle in c.message


def test_driver_check_assumes_the_engines_default_image() -> None:
    c = check(facts(), "driver", engine="vllm", driver="575.57.08", gpu="RTX-4090")
    assert c.status == "fail"  # vLLM >= 0.20 images are CUDA 13.0
    assert "assumed" in c.message
    assert not [
        x for x in compatibility_checks(facts(), PlanRequest(vram_bytes_per_gpu=GIB)) if x.name == "driver"
    ]


# ---- context and fit


def test_context_past_the_trained_length(tmp_path: Path) -> None:
    f = facts(max_position_embeddings=8192)
    vllm = plan(f, PlanRequest(engine="vllm", gpu=lookup_gpu("H100"), context=16384))
    ctx = next(c for c in vllm.checks if c.name == "context")
    assert ctx.status == "fail"
    assert "--context 8192" in ctx.message
    assert not vllm.ok
    g = model_facts_from_headers(None, (), [gguf_summary("m.gguf", 15, 10**9, context=8192)])
    llama = plan(g, PlanRequest(engine="llamacpp", gpu=lookup_gpu("H100"), context=16384))
    assert next(c for c in llama.checks if c.name == "context").status == "warn"


def test_fit_check_suggests_more_gpus_when_weights_do_not_fit() -> None:
    seventy = model_facts_from_headers(
        Arch(hidden=8192, layers=80, heads=64, kv_heads=8, ffn=28672).config(),
        [{"w": {"dtype": "BF16", "shape": [70_553_706_496], "data_offsets": [0, 141_107_412_992]}}],
    )
    p = plan(seventy, PlanRequest(engine="vllm", gpu=lookup_gpu("A100-80GB"), context=8192))
    fit = next(c for c in p.checks if c.name == "fits")
    assert fit.status == "fail"
    assert p.max_context == 0
    assert "use 2 GPUs" in fit.message
    two = plan(seventy, PlanRequest(engine="vllm", gpu=lookup_gpu("A100-80GB"), gpus=2, context=8192))
    assert 0 < two.max_context < 8192  # weights fit on two, with only a few thousand tokens of KV cache
    assert plan(seventy, PlanRequest(engine="vllm", gpu=lookup_gpu("A100-80GB"), gpus=4, context=8192)).fits
