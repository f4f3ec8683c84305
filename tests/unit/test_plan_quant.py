"""Choosing a quantized variant: the highest quality that fits and can run."""

from __future__ import annotations

import pytest
from plan_helpers import AWQ_QUANT_CONFIG, FP8_QUANT_CONFIG, Arch, gguf_summary, write_model

from airpack.errors import CompatibilityError, SourceError
from airpack.plan import (
    PlanRequest,
    QuantCandidate,
    choose_quant,
    lookup_gpu,
    model_facts_from_dir,
    model_facts_from_headers,
)


@pytest.fixture(scope="module")
def llama_variants(tmp_path_factory: pytest.TempPathFactory) -> list[QuantCandidate]:
    root = tmp_path_factory.mktemp("variants")
    arch = Arch()
    bf16 = write_model(root / "bf16", arch.config(), arch.plain_tensors())
    fp8 = write_model(root / "fp8", arch.config(), arch.fp8_tensors(), quant_config=FP8_QUANT_CONFIG)
    awq = write_model(
        root / "awq", arch.config(torch_dtype="float16"), arch.awq_tensors(), quant_config=AWQ_QUANT_CONFIG
    )
    return [
        QuantCandidate("meta-llama/Llama-3.1-8B-Instruct", model_facts_from_dir(bf16)),
        QuantCandidate("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8", model_facts_from_dir(fp8)),
        QuantCandidate("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", model_facts_from_dir(awq)),
    ]


def test_auto_keeps_bf16_when_it_fits(llama_variants: list[QuantCandidate]) -> None:
    chosen, reason, p = choose_quant(llama_variants, PlanRequest(gpu=lookup_gpu("L4"), context=8192))
    assert chosen.label == "bf16"
    assert p.fits
    assert "highest-quality" in reason


def test_auto_steps_down_to_fp8_for_a_longer_context(llama_variants: list[QuantCandidate]) -> None:
    chosen, reason = choose_quant(llama_variants, PlanRequest(gpu=lookup_gpu("L4"), context=32768))[:2]
    assert chosen.label == "fp8"
    assert "bf16" in reason  # says what was passed over


def test_auto_skips_variants_the_gpu_cannot_run(llama_variants: list[QuantCandidate]) -> None:
    # 13.5 GiB usable on a T4 would hold FP8 (8.5 GiB), but FP8 needs compute capability 8.0+
    chosen = choose_quant(llama_variants, PlanRequest(gpu=lookup_gpu("T4"), context=8192)).candidate
    assert chosen.label == "awq-4bit-g128"


def test_named_quant_is_honoured_or_explained(llama_variants: list[QuantCandidate]) -> None:
    req = PlanRequest(gpu=lookup_gpu("H100"), context=8192)
    assert choose_quant(llama_variants, req, want="AWQ").candidate.label == "awq-4bit-g128"
    assert choose_quant(llama_variants, req, want="fp8").candidate.label == "fp8"
    with pytest.raises(SourceError, match="available: awq-4bit-g128, bf16, fp8"):
        choose_quant(llama_variants, req, want="gptq")
    with pytest.raises(CompatibilityError, match="fp8") as err:
        choose_quant(llama_variants, PlanRequest(gpu=lookup_gpu("T4"), context=8192), want="fp8")
    assert "awq-4bit-g128" in str(err.value)  # what would fit instead


def test_nothing_fits_is_a_compatibility_error(llama_variants: list[QuantCandidate]) -> None:
    with pytest.raises(CompatibilityError, match="no variant fits"):
        choose_quant(llama_variants, PlanRequest(vram_bytes_per_gpu=4 * 2**30, context=8192))


def test_gguf_variants_by_file_type() -> None:
    sizes = {"Q8_0": (7, 8_540_000_000), "Q6_K": (18, 6_600_000_000), "Q4_K_M": (15, 4_920_000_000),
             "Q2_K": (10, 3_180_000_000)}  # bartowski Llama-3.1-8B file sizes  # fmt: skip
    cands = [
        QuantCandidate(f"Meta-Llama-3.1-8B-Instruct-{q}.gguf",
                       model_facts_from_headers(None, (), [gguf_summary(f"{q}.gguf", ft, size)]))
        for q, (ft, size) in sizes.items()
    ]  # fmt: skip
    t4 = PlanRequest(engine="llamacpp", gpu=lookup_gpu("T4"), context=8192)
    assert choose_quant(cands, t4).candidate.label == "Q8_0"
    long = PlanRequest(engine="llamacpp", gpu=lookup_gpu("T4"), context=65536)
    assert choose_quant(cands, long).candidate.label == "Q4_K_M"
    assert choose_quant(cands, t4, want="q4_k_m").candidate.label == "Q4_K_M"
    # a GGUF engine never picks safetensors and vice versa
    with pytest.raises(CompatibilityError):
        choose_quant(cands, PlanRequest(engine="vllm", gpu=lookup_gpu("H100"), context=8192))
