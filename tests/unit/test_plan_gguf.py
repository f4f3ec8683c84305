"""GGUF metadata through airpack's header reader (airpack/plan/gguf_header.py), on the real SmolLM2-135M Q4_1 file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from plan_helpers import find_smollm2_gguf, gguf_summary, write_tiny_gguf

from airpack.errors import SourceError
from airpack.plan import (
    ModelFacts,
    PlanRequest,
    QuantCandidate,
    choose_quant,
    gguf_candidates_from_dir,
    gguf_summary_from_prefix,
    kv_cache_bytes,
    lookup_gpu,
    model_facts_from_dir,
    model_facts_from_headers,
    plan,
    read_gguf,
)
from airpack.plan.gpus import GIB


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[QuantCandidate, ...]]:
    """A directory with the real SmolLM2 GGUF, a tiny GGUFWriter file and a vision projector; read once."""
    root = tmp_path_factory.mktemp("gguf")
    (root / "SmolLM2-Q4_1.gguf").symlink_to(find_smollm2_gguf())
    write_tiny_gguf(root / "tiny-Q8_0.gguf")
    (root / "mmproj-tiny-f16.gguf").symlink_to(root / "tiny-Q8_0.gguf")
    return root, gguf_candidates_from_dir(root)


@pytest.fixture(scope="module")
def smol(variants: tuple[Path, tuple[QuantCandidate, ...]]) -> ModelFacts:
    return next(c.facts for c in variants[1] if c.ref == "SmolLM2-Q4_1.gguf")


def test_smollm2_metadata(smol: ModelFacts) -> None:
    assert smol.weight_format == "gguf"
    assert smol.architecture == "llama"
    assert (smol.num_layers, smol.num_attention_heads, smol.num_kv_heads, smol.head_dim) == (30, 9, 3, 64)
    assert smol.max_context == 8192
    assert smol.quantization.label == "Q4_1"  # general.file_type 3
    assert smol.vocab_size == 49152
    assert smol.param_count == 134_515_008  # "135M"


def test_smollm2_weights_are_the_tensor_data_size(smol: ModelFacts) -> None:
    path = find_smollm2_gguf()
    assert smol.weights_bytes == 96_576_768
    # everything in the file but the metadata header (1.7 MiB of tokenizer) is tensor data
    header = path.stat().st_size - smol.weights_bytes
    assert 0 < header < 2 * 1024 * 1024
    assert dict(smol.bytes_by_dtype).keys() == {"F32", "Q4_1", "Q8_0"}


def test_smollm2_on_t4_at_4096(smol: ModelFacts) -> None:
    p = plan(smol, PlanRequest(gpu=lookup_gpu("T4"), context=4096))
    assert p.engine == "llamacpp"
    assert p.kv_bytes_per_token == 2 * 30 * 3 * 64 * 2 == 23040
    assert p.kv_bytes == 4096 * 23040
    assert p.fits
    assert p.ok
    assert p.max_context == 8192
    assert p.available_bytes == 15360 * 1024 * 1024
    assert [c.status for c in p.checks] == ["pass"] * len(p.checks)
    on_vllm = plan(smol, PlanRequest(engine="vllm", gpu=lookup_gpu("T4"), context=4096))
    assert not on_vllm.ok
    assert next(c for c in on_vllm.checks if c.name == "format").status == "fail"


def test_smollm2_on_host_ram(smol: ModelFacts) -> None:
    p = plan(smol, PlanRequest(engine="ollama", gpus=0, vram_bytes_per_gpu=GIB))
    assert p.device == "host"
    assert p.context == 4096  # Ollama's default below 24 GiB
    assert p.fits


def test_prefix_read_matches_full_read(smol: ModelFacts) -> None:
    path = find_smollm2_gguf()
    with path.open("rb") as fh:
        prefix = fh.read(2 * 1024 * 1024)
    remote = gguf_summary_from_prefix(prefix, path.stat().st_size, path.name)
    assert dataclasses.replace(model_facts_from_headers(None, (), [remote]), source=smol.source) == smol
    # the header runs to ~1.7 MiB: a short read must be refused, not parsed with zeros for the missing bytes
    header_len = path.stat().st_size - smol.weights_bytes
    for short in (200, header_len - 16):
        with pytest.raises(SourceError, match="bytes"):
            gguf_summary_from_prefix(prefix[:short], path.stat().st_size, path.name)


def test_lfs_pointer_and_wrong_magic_are_source_errors(tmp_path: Path) -> None:
    pointer = tmp_path / "m.gguf"
    pointer.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(SourceError, match="LFS"):
        read_gguf(pointer)
    junk = tmp_path / "j.gguf"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(SourceError, match="magic"):
        read_gguf(junk)


def test_directory_with_several_variants(variants: tuple[Path, tuple[QuantCandidate, ...]]) -> None:
    root, cands = variants
    assert [(c.ref, c.label) for c in cands] == [("SmolLM2-Q4_1.gguf", "Q4_1"), ("tiny-Q8_0.gguf", "Q8_0")]
    with pytest.raises(SourceError, match="2 GGUF variants"):
        model_facts_from_dir(root)
    with pytest.raises(SourceError, match="no GGUF file"):
        model_facts_from_dir(root, gguf_file="missing.gguf")
    # highest quality that fits: the SmolLM2 file is larger than the tiny one
    chosen = choose_quant(cands, PlanRequest(gpu=lookup_gpu("T4"), context=4096)).candidate
    assert chosen.ref == "SmolLM2-Q4_1.gguf"


def test_ggufwriter_file_sliding_pattern_and_per_layer_heads(
    variants: tuple[Path, tuple[QuantCandidate, ...]],
) -> None:
    tiny = next(c.facts for c in variants[1] if c.ref == "tiny-Q8_0.gguf")
    assert tiny.architecture == "gemma3"
    assert (tiny.num_layers, tiny.num_kv_heads, tiny.head_dim, tiny.max_context) == (6, 2, 128, 32768)
    assert (tiny.sliding_layers, tiny.full_attention_layers, tiny.sliding_window) == (4, 2, 512)
    assert tiny.weights_bytes == (1000 * 256 + 256) * 4
    assert kv_cache_bytes(tiny, 2, 8192) == 2 * 2 * 128 * 2 * (2 * 8192 + 4 * 512)


def test_split_gguf_sums_shards_and_requires_all_of_them() -> None:
    shards = [gguf_summary(f"m-{i + 1:05d}-of-00003.gguf", 7, 3 * 10**9, extra={"split.count": 3, "split.no": i})
              for i in range(3)]  # fmt: skip
    facts = model_facts_from_headers(None, (), shards)
    assert facts.weights_bytes == 9 * 10**9
    assert facts.gguf_shards == 3
    assert facts.quantization.label == "Q8_0"
    with pytest.raises(SourceError, match="shard"):
        model_facts_from_headers(None, (), shards[:2])


def test_gguf_per_layer_kv_heads_and_sliding_pattern() -> None:
    hybrid = gguf_summary("h.gguf", 15, 10**9, layers=4, kv_heads=(8, 0, 8, 0))  # SSM layers keep no KV
    assert model_facts_from_headers(None, (), [hybrid]).attention_layers == 2
    swa = gguf_summary(
        "g.gguf", 15, 10**9, arch="gemma3", layers=12,
        extra={"gemma3.attention.sliding_window": 1024, "gemma3.attention.sliding_window_pattern": 6},
    )  # fmt: skip
    f = model_facts_from_headers(None, (), [swa])
    assert (f.sliding_layers, f.full_attention_layers, f.sliding_window) == (10, 2, 1024)
