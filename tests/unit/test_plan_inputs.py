"""Model facts from metadata only, checked against published figures for Llama-3.1-8B / 70B."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from plan_helpers import AWQ_QUANT_CONFIG, FP8_QUANT_CONFIG, Arch, write_model, write_sparse_safetensors

from airpack.errors import SourceError
from airpack.plan import kv_bytes_per_token, kv_cache_bytes, model_facts_from_dir, model_facts_from_headers
from airpack.plan.gpus import GIB
from airpack.plan.safetensors_facts import parse_safetensors_header, read_safetensors_header

KIB = 1024
FP16 = 2


def test_llama31_8b_bf16_weights_match_vllm_log(tmp_path: Path) -> None:
    arch = Arch()
    model = write_model(tmp_path / "m", arch.config(), arch.plain_tensors(), shards=4)
    facts = model_facts_from_dir(model)
    # vllm#10511: "model weights take 14.96GiB"; llama.cpp: "model params = 8.03 B"
    assert facts.weights_bytes / GIB == pytest.approx(14.96, abs=0.005)
    assert facts.param_count == 8_030_261_248
    assert facts.quantization.scheme == "none"
    assert facts.dtype == "bfloat16"
    assert len(facts.files) == 4
    # the files really are sparse: sixteen gigabytes described, almost nothing on disk
    assert sum(p.stat().st_blocks * 512 for p in model.glob("*.safetensors")) < 4 * 1024 * 1024


def test_llama31_8b_fp8_weights_match_published_shards(tmp_path: Path) -> None:
    arch = Arch()
    model = write_model(tmp_path / "fp8", arch.config(), arch.fp8_tensors(), quant_config=FP8_QUANT_CONFIG)
    facts = model_facts_from_dir(model)
    # RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8: shards 5 GB + 4.08 GB = 9.08 GB
    assert facts.weights_bytes / 1e9 == pytest.approx(9.08, abs=0.005)
    assert facts.quantization.scheme == "fp8"
    assert facts.quantization.label == "fp8"


def test_llama31_8b_awq_weights_match_published_shards(tmp_path: Path) -> None:
    arch = Arch()
    model = write_model(
        tmp_path / "awq",
        arch.config(torch_dtype="float16"),
        arch.awq_tensors(),
        quant_config=AWQ_QUANT_CONFIG,
    )
    facts = model_facts_from_dir(model)
    # hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4: 4.68 + 1.05 = 5.73 GB
    assert facts.weights_bytes / 1e9 == pytest.approx(5.73, abs=0.005)
    assert facts.quantization.scheme == "awq"
    assert facts.quantization.bits == 4
    assert facts.quantization.group_size == 128
    assert facts.param_count is None  # packed int4: element counts are not parameters


def test_kv_per_token_is_gqa_aware() -> None:
    facts_8b = model_facts_from_headers(Arch().config(), [_one_tensor()])
    facts_70b = model_facts_from_headers(
        Arch(hidden=8192, layers=80, heads=64, kv_heads=8, ffn=28672).config(), [_one_tensor()]
    )
    # 2 * 32 * 8 * 128 * 2 = 128 KiB; 2 * 80 * 8 * 128 * 2 = 320 KiB (llama.cpp: 256 / 640 MiB at 2048 ctx)
    assert sum(kv_bytes_per_token(facts_8b, FP16)) == 128 * KIB
    assert sum(kv_bytes_per_token(facts_70b, FP16)) == 320 * KIB
    assert kv_cache_bytes(facts_8b, FP16, 2048) == 256 * 1024 * KIB
    # HF blog: 0.125 GB at 1k and 15.62 GB at 128k for 8B; 39.06 GB at 128k for 70B (binary units)
    assert kv_cache_bytes(facts_8b, FP16, 1024) / GIB == pytest.approx(0.125, abs=0.0005)
    assert kv_cache_bytes(facts_8b, FP16, 128 * 1000) / GIB == pytest.approx(
        15.62, abs=0.006
    )  # 15.625, printed truncated
    assert kv_cache_bytes(facts_70b, FP16, 128 * 1000) / GIB == pytest.approx(39.06, abs=0.005)


def test_missing_num_key_value_heads_means_multi_head_attention() -> None:
    facts = model_facts_from_headers(Arch(kv_heads=None).config(), [_one_tensor()])
    assert facts.num_kv_heads == 32
    assert sum(kv_bytes_per_token(facts, FP16)) == 4 * 128 * KIB


def test_explicit_head_dim_wins_over_hidden_over_heads() -> None:
    # Qwen3-4B style: hidden 2560 / 32 heads = 80, but head_dim is 128
    arch = Arch(hidden=2560, layers=36, heads=32, kv_heads=8, head_dim=128)
    facts = model_facts_from_headers(arch.config(), [_one_tensor()])
    assert facts.head_dim == 128
    assert sum(kv_bytes_per_token(facts, FP16)) == 2 * 36 * 8 * 128 * 2


def test_nested_text_config_is_used_for_multimodal_models() -> None:
    text = Arch(hidden=2560, layers=34, heads=8, kv_heads=4, head_dim=256).config()
    config = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "vision_config": {"hidden_size": 1152, "num_hidden_layers": 27, "num_attention_heads": 16},
        "text_config": {k: v for k, v in text.items() if k not in ("architectures", "torch_dtype")},
        "torch_dtype": "bfloat16",
    }
    facts = model_facts_from_headers(config, [_one_tensor()])
    assert (facts.num_layers, facts.num_attention_heads, facts.num_kv_heads, facts.head_dim) == (
        34,
        8,
        4,
        256,
    )
    assert facts.dtype == "bfloat16"
    assert facts.architecture == "Gemma3ForConditionalGeneration"


def test_layer_types_sliding_window_limits_kv_of_sliding_layers() -> None:
    layer_types = (["sliding_attention"] * 5 + ["full_attention"]) * 4  # 24 layers, 4 full
    config = Arch(layers=24).config(sliding_window=1024, layer_types=layer_types)
    facts = model_facts_from_headers(config, [_one_tensor()])
    assert (facts.sliding_layers, facts.full_attention_layers, facts.sliding_window) == (20, 4, 1024)
    per_layer = 2 * 8 * 128 * 2
    assert kv_bytes_per_token(facts, FP16) == (4 * per_layer, 20 * per_layer)
    # below the window every layer grows; past it only the 4 full layers do
    assert kv_cache_bytes(facts, FP16, 512) == 24 * per_layer * 512
    assert kv_cache_bytes(facts, FP16, 32768) == per_layer * (4 * 32768 + 20 * 1024)


def test_sliding_window_pattern_and_mistral_and_disabled_windows() -> None:
    gemma3 = model_facts_from_headers(
        Arch(layers=24).config(sliding_window=512, sliding_window_pattern=6), [_one_tensor()]
    )
    assert (gemma3.sliding_layers, gemma3.full_attention_layers) == (20, 4)
    mistral = model_facts_from_headers(Arch().config(sliding_window=4096), [_one_tensor()])
    assert mistral.sliding_layers == 32
    assert kv_cache_bytes(mistral, FP16, 32768) == kv_cache_bytes(mistral, FP16, 4096)
    qwen2 = model_facts_from_headers(
        Arch().config(sliding_window=131072, use_sliding_window=False, max_window_layers=28), [_one_tensor()]
    )
    assert qwen2.sliding_layers == 0
    assert qwen2.sliding_window is None
    no_window = model_facts_from_headers(Arch().config(sliding_window=None), [_one_tensor()])
    assert no_window.sliding_layers == 0


def test_mla_cache_is_one_latent_per_layer() -> None:
    config = Arch(hidden=7168, layers=61, heads=128, kv_heads=128).config(
        kv_lora_rank=512, qk_rope_head_dim=64, v_head_dim=128, head_dim=192
    )
    facts = model_facts_from_headers(config, [_one_tensor()])
    assert facts.mla_kv_dim == 576
    # DeepSeek-V3: (512 + 64) * 61 layers * 2 bytes, no per-head K and V
    assert sum(kv_bytes_per_token(facts, FP16)) == 576 * 61 * 2


def test_consolidated_duplicate_is_not_counted_twice(tmp_path: Path) -> None:
    arch = Arch(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=1000)
    model = write_model(tmp_path / "m", arch.config(), arch.plain_tensors())
    write_sparse_safetensors(model / "consolidated.safetensors", arch.plain_tensors())
    once = model_facts_from_dir(model)
    assert once.files == ("model.safetensors",)
    assert once.param_count == sum(math.prod(t[2]) for t in arch.plain_tensors())


def test_float32_dtype_inferred_from_headers_when_config_is_silent(tmp_path: Path) -> None:
    arch = Arch(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=1000)
    config = arch.config()
    del config["torch_dtype"]
    model = write_model(tmp_path / "m", config, arch.plain_tensors("F32"))
    assert model_facts_from_dir(model).dtype == "float32"
    config["dtype"] = "float16"  # newer transformers write "dtype"
    model2 = write_model(tmp_path / "m2", config, arch.plain_tensors("F32"))
    assert model_facts_from_dir(model2).dtype == "float16"


def test_truncated_or_corrupt_safetensors_are_source_errors(tmp_path: Path) -> None:
    arch = Arch(hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, vocab=1000)
    path = tmp_path / "model.safetensors"
    write_sparse_safetensors(path, arch.plain_tensors())
    read_safetensors_header(path)
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - 1)
    with pytest.raises(SourceError, match="truncated"):
        read_safetensors_header(path)
    lfs = tmp_path / "lfs.safetensors"
    lfs.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(SourceError, match="LFS"):
        read_safetensors_header(lfs)
    bad = {"w": {"dtype": "BF16", "shape": [4, 4], "data_offsets": [0, 30]}}
    with pytest.raises(SourceError, match="expected 32"):
        parse_safetensors_header(json.dumps(bad).encode())


def test_missing_config_or_weights_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"config\.json"):
        model_facts_from_headers(None, [_one_tensor()])
    (tmp_path / "config.json").write_text(json.dumps(Arch().config()))
    with pytest.raises(SourceError, match="no safetensors or GGUF"):
        model_facts_from_dir(tmp_path)
    with pytest.raises(SourceError, match="num_hidden_layers"):
        model_facts_from_headers({"hidden_size": 64}, [_one_tensor()])


def _one_tensor() -> dict[str, object]:
    return {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}
