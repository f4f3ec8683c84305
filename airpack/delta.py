"""Delta updates: volumes that carry only what the far side lacks, and a join that takes the rest from the bundle
it already has.

``split --base OLD`` leaves out every file of the new bundle whose SHA-256 appears in ``OLD``'s ``SHA256SUMS``
(``OLD`` is the previous bundle folder or only its ``SHA256SUMS``: the connected side may keep just that),
whatever its path: unchanged weight shards, image layers shared with the previous runtime image, renamed files.
Each volume still holds the new bundle's signed root and proves each of its pieces alone; its volume file names
the base (the SHA-256 of the base's ``SHA256SUMS``) and the files to take from it.

``join --base OLD_BUNDLE`` first finds every one of those files in the base, by content, through the base's own
``SHA256SUMS`` (which is only a map, never trusted): when one is missing it refuses before anything is copied and
names them all. It then copies the base files into the bundle being joined like pieces of one more volume, hashing
every byte as it passes and proving it against the *new* signed root (per chunk from the chaining values, or whole),
so a base changed after it was verified is caught during the copy. The join's state covers the base files too: a
killed join resumes. The result is byte for byte the new bundle, as a full split would have given.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airpack._fs import path_problem, read_capped
from airpack.bundle_layout import MANIFEST, MAX_MANIFEST_BYTES, MAX_SUMS_BYTES, SUMS, Manifest, parse_sums
from airpack.errors import AirpackError, UsageError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.join_guard import refuse_nested
from airpack.progress import Reporter
from airpack.signing import PublicKey
from airpack.textsafe import escape_tree
from airpack.verify import Problem, SignedRoot, signed_root
from airpack.volume_format import MAX_VOLUME_FILE_BYTES, VOLUME_FILE, BaseRef, Piece, Volume
from airpack.volumes import JoinResult, _read_volume, join_volumes, split_bundle


@dataclass(frozen=True)
class BaseSums:
    """A base bundle's ``SHA256SUMS``: its own SHA-256 and, for each content hash, the paths that hold it."""

    sums_sha256: str
    paths: dict[str, tuple[str, ...]]


def read_base_sums(base: Path) -> BaseSums:
    """``base`` is a bundle folder or its ``SHA256SUMS`` file. Unsafe paths are dropped (never looked up)."""
    path = base / SUMS if base.is_dir() else base
    try:
        data = read_capped(path, MAX_SUMS_BYTES)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file", hint="--base is the previous bundle folder or its SHA256SUMS"
                         ) from None
    except OSError as exc:
        raise UsageError(f"{path}: unusable base checksum list: {exc}") from None
    lines, bad = parse_sums(data)
    if bad or not lines:
        where = f"line {bad[0][0]}: {bad[0][1]}" if bad else "it lists no file"
        raise UsageError(f"{path}: not a bundle's {SUMS} ({where})")
    paths: dict[str, list[str]] = {}
    for line in lines:
        if path_problem(line.path) is None:
            paths.setdefault(line.sha256, []).append(line.path)
    return BaseSums(sha256_bytes(data), {h: tuple(p) for h, p in paths.items()})


def base_ref(root: SignedRoot, base: BaseSums) -> BaseRef:
    """The files of the new bundle (its manifest aside: every volume holds it) whose content the base holds."""
    files = sorted((p for p, h in root.listed.items() if p != MANIFEST and h in base.paths), key=str.encode)
    return BaseRef(base.sums_sha256, tuple(files))


def split_with_base(bundle: Path, keys: Sequence[PublicKey], out: Path, capacity: int, *, base: Path | None,
                    max_file: int | None = None, only: int | None = None,
                    reporter: Reporter | None = None) -> list[Volume]:
    """``split_bundle``, leaving to ``base`` (when given) every file whose content it already holds."""
    if base is None:
        return split_bundle(bundle, keys, out, capacity, max_file=max_file, only=only, reporter=reporter)
    ref = base_ref(signed_root(bundle, keys), read_base_sums(base))
    return split_bundle(bundle, keys, out, capacity - ref.json_bytes(), max_file=max_file, only=only,
                        reporter=reporter, base=ref)


def _find_in_base(base: Path, rel: str, sha: str, size: int, sums: BaseSums) -> tuple[str | None, str]:
    """The base path holding ``rel``'s content (its own path first), or None and why not."""
    candidates = sorted(sums.paths.get(sha, ()), key=lambda p: (p != rel, p))
    if not candidates:
        return None, f"no file with sha256 {sha} in the base's {SUMS}"
    why = ""
    for cand in candidates:
        try:
            st = (base / cand).lstat()
        except OSError:
            why = f"{cand} is listed in the base's {SUMS} but absent"
            continue
        if not stat.S_ISREG(st.st_mode):
            why = f"{cand} in the base is not a regular file"
        elif st.st_size != size:
            why = f"{cand} in the base has {st.st_size} bytes, the signed file {size}"
        else:
            return cand, ""
    return None, why


def base_source(base: Path, root: SignedRoot, ref: BaseRef, count: int) -> tuple[Path, Volume, SignedRoot]:
    """The base as one more source of pieces for ``join_volumes``: each file the delta leaves to it, whole, at
    its path in the base. Every file is looked for first; any missing refuses the join, naming them all."""
    if not base.is_dir() or base.is_symlink():
        raise UsageError(f"{base}: not a bundle folder", hint="join --base takes the previous bundle's folder")
    sums = read_base_sums(base)
    pieces: list[Piece] = []
    problems: list[Problem] = []
    for rel in ref.files:
        size = root.entries[rel].size
        found, why = _find_in_base(base, rel, root.listed[rel], size, sums)
        if found is None:
            problems.append(Problem("missing-in-base", rel, why))
        else:
            pieces.append(Piece(rel, 0, size, size, found))
    if problems:
        other = "" if sums.sums_sha256 == ref.sums_sha256 else (
            f"; the volumes were made against the base whose {SUMS} has sha256 {ref.sums_sha256}, "
            f"this one's is {sums.sums_sha256}")
        raise VerificationError(f"{base}: the base lacks {len(problems)} file(s) that the delta left out: "
                                + ", ".join(p.path for p in problems) + other, problems=tuple(problems))
    return base, Volume(0, count, root.manifest.name, root.manifest.version, root.sums_sha256, tuple(pieces)), root


def join_with_base(volumes: Sequence[Path], keys: Sequence[PublicKey], out: Path, *, base: Path | None,
                   reporter: Reporter | None = None) -> JoinResult:
    """``join_volumes``; for the volumes of a delta split, the files they leave out come from ``base``."""
    read = [_read_volume(folder, keys) for folder in volumes]
    refs = {vol.base for vol, _ in read if vol.base is not None}
    if not refs:
        return join_volumes(volumes, keys, out, reporter=reporter)
    if len(refs) > 1 or len(refs) != len({vol.base for vol, _ in read}):
        raise VerificationError("the volumes come from different splits (with and without a base, or other bases)",
                                hint="join the volumes of one 'airpack split' run")
    ref = refs.pop()
    if base is None:
        raise UsageError(f"these are volumes of a delta split: {len(ref.files)} file(s) come from the bundle the "
                         "far side already has", hint=f"add --base OLD_BUNDLE (its {SUMS} has sha256 "
                         f"{ref.sums_sha256})")
    refuse_nested(out, [base])  # the base, like every volume, is only read
    vol, root = read[0]
    source = base_source(base, root, ref, vol.count)
    try:
        return join_volumes(volumes, keys, out, reporter=reporter, extra=[source])
    except VerificationError as exc:
        if not exc.message.startswith(f"{base}{os.sep}"):
            raise
        raise VerificationError(f"{exc.message} (a file of the base bundle)", hint="the base changed since it was "
                                "made or verified; the new bundle's signature proves it wrong. Restore the base, "
                                "or carry a full split") from None


def describe_volume(folder: Path) -> dict[str, Any]:
    """What a volume says it carries and, for a delta, what it takes from the base (unverified, for inspect)."""
    try:
        vol = Volume.from_json(read_capped(folder / VOLUME_FILE, MAX_VOLUME_FILE_BYTES), str(folder))
        manifest = Manifest.from_json(read_capped(folder / MANIFEST, MAX_MANIFEST_BYTES))
    except (OSError, ValueError, KeyError, TypeError, AirpackError) as exc:
        raise UsageError(f"{folder}: unreadable volume: {exc}") from None
    entries = {e.path: e for e in manifest.files}
    out: dict[str, Any] = {"index": vol.index, "count": vol.count, "pieces": len(vol.pieces),
                           "bytes": sum(p.length for p in vol.pieces), "base": None}
    if vol.base is not None:
        files = [{"path": f, "size": entries[f].size if f in entries else None,
                  "sha256": entries[f].sha256 if f in entries else None} for f in vol.base.files]
        out["base"] = {"sums": vol.base.sums_sha256, "files": files,
                       "bytes": sum(f["size"] or 0 for f in files)}
    described: dict[str, Any] = escape_tree(out)
    return described  # unverified text from the medium: no control character reaches a terminal


def volume_lines(vol: dict[str, Any]) -> list[str]:
    """``describe_volume``'s answer as text for ``inspect``."""
    lines = [f"volume {vol['index']} of {vol['count']}: {vol['pieces']} pieces, {vol['bytes']:,} bytes"]
    if base := vol["base"]:
        lines.append(f"from the base bundle (its {SUMS} has sha256 {base['sums']}), not carried: "
                     f"{len(base['files'])} files, {base['bytes']:,} bytes")
        lines += [f"  {f['size'] or 0:>14,}  {f['path']}" for f in base["files"]]
    return lines
