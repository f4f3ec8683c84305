"""The GPUs airpack knows by name: memory, compute capability and whether NVIDIA counts them as datacenter parts.

Memory is the ``memory.total`` that ``nvidia-smi`` reports (MiB), not the marketing figure: a "16 GB" T4 shows
15360 MiB and the planner must not promise bytes the driver never hands out. Datacenter class matters for the
driver check: only datacenter GPUs may use NVIDIA's forward-compatibility path (newer CUDA on an older driver).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from airpack.errors import CompatibilityError

MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    """One GPU model. ``vram_bytes`` is per GPU; ``compute_capability`` is (major, minor), e.g. (8, 0)."""

    name: str
    vram_bytes: int
    compute_capability: tuple[int, int]
    datacenter: bool
    architecture: str

    def __post_init__(self) -> None:
        if self.vram_bytes <= 0:
            raise ValueError(f"GPU {self.name}: vram_bytes must be positive")

    @property
    def compute_capability_str(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"

    @property
    def vram_gib(self) -> float:
        return self.vram_bytes / GIB


def _gpu(name: str, mib: int, cc: tuple[int, int], datacenter: bool, arch: str) -> GpuInfo:
    return GpuInfo(
        name=name, vram_bytes=mib * MIB, compute_capability=cc, datacenter=datacenter, architecture=arch
    )


# Workstation "RTX A6000 / RTX 6000 Ada" cards are listed as not datacenter: NVIDIA's forward-compatibility support
# covers datacenter GPUs and only *select* RTX server SKUs, so the driver check stays conservative for them.
GPUS: tuple[GpuInfo, ...] = (
    _gpu("P100", 16384, (6, 0), True, "Pascal"),
    _gpu("V100", 16384, (7, 0), True, "Volta"),
    _gpu("V100-32GB", 32768, (7, 0), True, "Volta"),
    _gpu("T4", 15360, (7, 5), True, "Turing"),
    _gpu("A10", 23028, (8, 6), True, "Ampere"),
    _gpu("A10G", 23028, (8, 6), True, "Ampere"),
    _gpu("A30", 24576, (8, 0), True, "Ampere"),
    _gpu("A40", 46068, (8, 6), True, "Ampere"),
    _gpu("A100-40GB", 40960, (8, 0), True, "Ampere"),
    _gpu("A100-80GB", 81920, (8, 0), True, "Ampere"),
    _gpu("L4", 23034, (8, 9), True, "Ada"),
    _gpu("L40", 46068, (8, 9), True, "Ada"),
    _gpu("L40S", 46068, (8, 9), True, "Ada"),
    _gpu("H100-80GB", 81559, (9, 0), True, "Hopper"),
    _gpu("H100-NVL", 95830, (9, 0), True, "Hopper"),
    _gpu("H200", 143771, (9, 0), True, "Hopper"),
    _gpu("GH200", 97871, (9, 0), True, "Hopper"),
    _gpu("B200", 183359, (10, 0), True, "Blackwell"),
    _gpu("RTX-3080", 10240, (8, 6), False, "Ampere"),
    _gpu("RTX-3090", 24576, (8, 6), False, "Ampere"),
    _gpu("RTX-A5000", 24564, (8, 6), False, "Ampere"),
    _gpu("RTX-A6000", 49140, (8, 6), False, "Ampere"),
    _gpu("RTX-4080", 16376, (8, 9), False, "Ada"),
    _gpu("RTX-4090", 24564, (8, 9), False, "Ada"),
    _gpu("RTX-6000-ADA", 49140, (8, 9), False, "Ada"),
    _gpu("RTX-5090", 32607, (12, 0), False, "Blackwell"),
)

# Extra spellings (already normalized, see _norm) that point at a canonical name.
_ALIASES: dict[str, str] = {
    "v10016gb": "V100",
    "v100sxm2": "V100",
    "a100sxm": "A100-80GB",
    "a100sxm480gb": "A100-80GB",
    "a100pcie80gb": "A100-80GB",
    "a100pcie40gb": "A100-40GB",
    "a100sxm440gb": "A100-40GB",
    "h100": "H100-80GB",
    "h100sxm": "H100-80GB",
    "h100sxm580gb": "H100-80GB",
    "h100pcie": "H100-80GB",
    "h100pcie80gb": "H100-80GB",
    "h200141gb": "H200",
    "h200sxm": "H200",
    "t416gb": "T4",
    "l424gb": "L4",
    "a10g24gb": "A10G",
    "a1024gb": "A10",
    "l40s48gb": "L40S",
    "4090": "RTX-4090",
    "3090": "RTX-3090",
    "a6000": "RTX-A6000",
    "rtx6000ada": "RTX-6000-ADA",
    "6000ada": "RTX-6000-ADA",
    # names exactly as nvidia-smi reports them (what `airpack doctor` looks up)
    "h10080gbhbm3": "H100-80GB",
    "a10080gbpcie": "A100-80GB",
    "a10040gbpcie": "A100-40GB",
    "h200nvl": "H200",
    "rtx6000adageneration": "RTX-6000-ADA",
    "v100sxm216gb": "V100",
    "v100pcie16gb": "V100",
    "v100sxm232gb": "V100-32GB",
    "v100pcie32gb": "V100-32GB",
}

# Names that exist in more than one memory size: guessing would make the plan wrong by half.
_AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "a100": ("A100-40GB", "A100-80GB"),
}

_NOISE = re.compile(r"\b(nvidia|tesla|geforce|quadro)\b")


def _norm(name: str) -> str:
    """Fold case, vendor words and separators: "NVIDIA A100 80GB", "a100-80gb" and "A100_80G" all compare equal."""
    text = _NOISE.sub(" ", name.lower())
    text = re.sub(r"(?<![a-z])(\d+)\s*gi?b?\b", r"\1gb", text)  # "80G", "80 GB", "80GiB" -> "80gb"
    return re.sub(r"[^a-z0-9]", "", text)


_BY_KEY: dict[str, GpuInfo] = {_norm(g.name): g for g in GPUS}
_BY_NAME: dict[str, GpuInfo] = {g.name: g for g in GPUS}


def known_gpu_names() -> tuple[str, ...]:
    return tuple(g.name for g in GPUS)


def lookup_gpu(name: str) -> GpuInfo:
    """The GPU called ``name`` (tolerant of case, vendor prefixes and separators).

    Raises CompatibilityError for an unknown or ambiguous name; the message lists the closest known names so a
    typo ("A100-80BG") is one edit away from working.
    """
    key = _norm(name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key.startswith("rtx") and key[3:] in _BY_KEY:
        return _BY_KEY[key[3:]]
    if "rtx" + key in _BY_KEY:
        return _BY_KEY["rtx" + key]
    if key in _ALIASES:
        return _BY_NAME[_ALIASES[key]]
    if key in _AMBIGUOUS:
        options = " or ".join(_AMBIGUOUS[key])
        raise CompatibilityError(
            f"GPU name {name!r} is ambiguous: say {options}", hint="or pass --vram GIB for the memory per GPU"
        )
    keys = list(_BY_KEY) + list(_ALIASES)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    names: list[str] = []
    for k in close:
        canonical = _BY_KEY[k].name if k in _BY_KEY else _ALIASES[k]
        if canonical not in names:
            names.append(canonical)
    suggestion = f"did you mean {', '.join(names)}?" if names else f"known: {', '.join(known_gpu_names())}"
    raise CompatibilityError(
        f"unknown GPU {name!r}: {suggestion}", hint="or pass --vram GIB for the memory per GPU"
    )
