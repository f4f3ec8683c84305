"""Guards for ``join`` (``airpack.volumes``): where it may write, and which joined bytes still count as proven.

A piece is written straight into the file being assembled, so a forged piece that fails its check has already
overwritten whatever it covered, ranges an earlier volume proved included. Before a piece is written, every
proven range it overlaps stops counting as proven (and that is saved first, so a crash mid-copy leaves no stale
claim either); those ranges are copied and proven again from their own volume. Nothing in a staging folder is
ever counted as proven without the check of the bytes now there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from airpack.bundle_layout import MANIFEST
from airpack.errors import UsageError
from airpack.verify import SignedRoot

Span = tuple[str, int, int]  # (bundle file, offset, length)


def _inside(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def refuse_nested(out: Path, volumes: Sequence[Path]) -> None:
    """``--out`` must not be inside a source volume, nor a source inside ``--out`` (sources are never modified:
    the bundle, its staging folder beside it, or its publication must not land in one)."""
    target = os.path.realpath(out)
    for folder in volumes:
        src = os.path.realpath(folder)
        if _inside(target, src) or _inside(src, target):
            raise UsageError(f"--out {out} and the volume {folder} are inside one another",
                             hint="join into a folder outside every volume (volumes are never modified)")


def overlapping(done: Iterable[Span], file: str, offset: int, length: int) -> set[Span]:
    """The proven spans of ``file`` that share at least one byte with ``[offset, offset + length)``."""
    end = offset + length
    return {s for s in done if s[0] == file and s[1] < end and offset < s[1] + s[2]}


def missing_files(root: SignedRoot, done: set[Span]) -> list[str]:
    """Files of the bundle not yet fully covered by joined, proven pieces."""
    sizes = {p: e.size for p, e in root.entries.items()}
    by_file: dict[str, list[tuple[int, int]]] = {}
    for file, off, length in done:
        by_file.setdefault(file, []).append((off, length))
    out = []
    for rel in root.listed:
        if rel == MANIFEST:
            continue
        pos = 0
        for off, length in sorted(by_file.get(rel, [])):
            if off > pos:
                break
            pos = max(pos, off + length)
        if pos < sizes.get(rel, 0) or rel not in by_file:
            out.append(rel)
    return out
