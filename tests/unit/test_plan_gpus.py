"""GPU name lookup: tolerant of spelling, strict about ambiguity, helpful about typos."""

from __future__ import annotations

import pytest

from airpack.errors import CompatibilityError
from airpack.plan import lookup_gpu
from airpack.plan.gpus import GIB, MIB


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("A100-80GB", "A100-80GB"),
        ("a100-80gb", "A100-80GB"),
        ("A100 80GB", "A100-80GB"),
        ("NVIDIA A100 80G", "A100-80GB"),
        ("a100_40gb", "A100-40GB"),
        ("nvidia l4", "L4"),
        ("Tesla T4", "T4"),
        ("A10G", "A10G"),
        ("a10", "A10"),
        ("L40S", "L40S"),
        ("H100", "H100-80GB"),
        ("h100 80 GB", "H100-80GB"),
        ("H200", "H200"),
        ("GeForce RTX 4090", "RTX-4090"),
        ("rtx4090", "RTX-4090"),
        ("4090", "RTX-4090"),
        ("RTX-3090", "RTX-3090"),
        ("v100", "V100"),
    ],
)
def test_lookup_tolerates_case_vendor_and_separators(spelling: str, name: str) -> None:
    assert lookup_gpu(spelling).name == name


def test_gpu_facts_are_the_drivers_view() -> None:
    t4 = lookup_gpu("T4")
    assert t4.vram_bytes == 15360 * MIB  # nvidia-smi memory.total, not the "16 GB" on the box
    assert t4.compute_capability == (7, 5)
    assert t4.datacenter
    assert lookup_gpu("A100-80GB").vram_bytes == 80 * GIB
    assert lookup_gpu("H100").compute_capability == (9, 0)
    assert lookup_gpu("L4").compute_capability == (8, 9)
    assert not lookup_gpu("RTX-4090").datacenter
    # A10G must not be read as "A10 with 'g' for GB"
    assert lookup_gpu("A10G").name != lookup_gpu("A10").name


def test_typo_names_close_matches() -> None:
    with pytest.raises(CompatibilityError) as err:
        lookup_gpu("A100-80BG")
    assert "did you mean A100-80GB" in str(err.value)
    with pytest.raises(CompatibilityError) as err:
        lookup_gpu("L40X")
    assert "did you mean" in str(err.value)
    assert "L40S" in str(err.value)


def test_ambiguous_name_asks_which() -> None:
    with pytest.raises(CompatibilityError) as err:
        lookup_gpu("A100")
    assert "A100-40GB" in str(err.value)
    assert "A100-80GB" in str(err.value)


def test_unknown_name_lists_known_gpus() -> None:
    with pytest.raises(CompatibilityError) as err:
        lookup_gpu("Zorg 9000")
    assert "T4" in str(err.value)
    assert "--vram" in str(err.value)
