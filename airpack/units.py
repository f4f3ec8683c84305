"""Sizes as people read them: one style (decimal units, as disks are sold and as ``--size 32GB`` means) for every
size airpack prints, and the plural rule for counts."""

from __future__ import annotations

import math

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_size(n: float, *, up: bool = False) -> str:
    """``16.5 MB``, ``2.68 GB``, ``512 B``: three significant digits. ``up`` rounds up (a size that must suffice)."""
    n = max(0.0, float(n))
    power = 0
    while n >= 999.5 and power < len(_UNITS) - 1:
        n /= 1000
        power += 1
    if power == 0:
        return f"{math.ceil(n) if up else round(n)} B"
    decimals = 2 if n < 10 else 1 if n < 100 else 0
    if up:
        scale = 10**decimals
        n = math.ceil(n * scale - 1e-9) / scale
        if n >= 1000 and power < len(_UNITS) - 1:
            return format_size(n * 1000**power, up=True)
    return f"{n:.{decimals}f} {_UNITS[power]}"


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 piece``, ``2 pieces``, ``0 files``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"
