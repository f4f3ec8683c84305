"""A bundle split into volumes for removable media, each checkable on its own, and joined back on the target.

A volume is a folder meant for one medium::

    airpack-volume.json        which pieces of which bundle files this volume holds (volume i of n)
    SHA256SUMS, SHA256SUMS.sig the bundle's signed root, in every volume ...
    airpack.json               ... with the manifest it vouches for
    <path>                     a bundle file held whole, at its own path (usable without joining)
    <path>.part<k>             piece k of a file split across volumes (or capped by ``max_file``, e.g. FAT32)

``airpack-volume.json`` is not signed and needs not be: every piece is checked against the signed root, a
whole file against its line in ``SHA256SUMS``, a piece of a large file chunk by chunk against the SHA-256
chaining values of ``airpack.json`` (pieces start and end on chunk boundaries, so each is provable alone).
A volume is checked when it is written, when ``airpack verify`` is pointed at it, and while ``join`` copies it.

Files are split only where they must be: a file that fits the space left in a volume is kept whole, a small
file that does not fit starts the next volume, and a large (chunked) file fills the rest of the volume and
continues on the next one. ``join`` takes volumes in any order and one at a time (one USB disk mounted after the
other), remembers what it has, refuses a volume of another bundle or build, says which volumes are still
missing, and publishes the bundle at ``--out`` with one rename once every byte is in. Source volumes are never
modified or deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airpack import verify
from airpack._fs import atomic_write_bytes, fsync_dir, open_regular, path_problem, read_capped
from airpack.bundle import check_space
from airpack.bundle_layout import ATTESTATIONS, MANIFEST, SUMS
from airpack.errors import UsageError, VerificationError
from airpack.hashing import BLOCK_SIZE, RangeCheck, check_ranges
from airpack.join_guard import missing_files, overlapping, refuse_nested
from airpack.packing import Item, pack
from airpack.progress import Reporter, Silent
from airpack.signing import PublicKey
from airpack.verify import SignedRoot, checks_for, require_folder, signed_root, walk_entries
from airpack.volume_format import (
    MAX_VOLUME_FILE_BYTES,
    ROOT_FILES,
    VOLUME_FILE,
    BaseRef,
    Piece,
    Volume,
    parse_size,  # noqa: F401 - re-exported: callers import it from here
)
from airpack.volume_format import PART_NAME as _PART

Progress = Callable[[int], None]


# ------------------------------------------------------------------------------------------------- planning

def plan_volumes(root: SignedRoot, capacity: int, *, max_file: int | None = None) -> list[Volume]:
    """Assign every signed file (the root files aside) to volumes of at most ``capacity`` bytes each."""
    manifest = root.manifest
    entries = root.entries
    root_bytes = len(root.sums) + 4096 + entries[MANIFEST].size if MANIFEST in entries else len(root.sums) + 4096
    reserve = root_bytes + 64 * 1024 + 320 * len(root.listed)  # the volume file: every piece's line, bounded
    items = [Item(rel, e.size if e else 0, e.chunk_size if e and e.chain else 0)
             for rel in root.listed if rel != MANIFEST for e in [entries.get(rel)]]
    size = {i.path: i.size for i in items}
    tool = [i for i in items if i.path.startswith("tool/")]  # whole in volume 1: it bootstraps the far side
    rest = [i for i in items if not i.path.startswith("tool/")]
    volumes = [[Piece(c.path, c.offset, c.length, size[c.path], f"{c.path}.part{c.part:03d}" if c.part else c.path)
                for c in cuts] for cuts in pack(rest, capacity, reserve, max_file, pinned=tool)]  # first fit
    count = len(volumes)
    out = [Volume(i + 1, count, manifest.name, manifest.version, root.sums_sha256, tuple(pieces))
           for i, pieces in enumerate(volumes)]
    for vol in out:
        folded = Counter(p.name.casefold() for p in vol.pieces)
        folded.update(r.casefold() for r in (*ROOT_FILES, VOLUME_FILE))
        clash = {n for n, k in folded.items() if k > 1}  # exFAT and NTFS media fold case
        if clash:
            raise UsageError(f"volume {vol.index}: two pieces would share a name ({min(clash)})")
    return out


# ------------------------------------------------------------------------------------------------ checking

def piece_checks(piece: Piece, path: Path, root: SignedRoot) -> list[RangeCheck]:
    """The jobs proving the bytes of ``piece`` (stored at ``path``) against the signed root.

    Empty when the piece cannot be proved alone (it does not start and end on the file's chunk boundaries,
    or the file has no per-chunk data): the joined file is then checked whole.
    """
    jobs = checks_for(path, piece.file, piece.size, root.listed[piece.file], root.entries.get(piece.file))
    end = piece.offset + piece.length
    mine = [replace(j, base=piece.offset) for j in jobs if piece.offset <= j.offset < end or (j.length == 0 == end)]
    covered = sum(j.length for j in mine)
    if covered != piece.length or any(j.offset + j.length > end for j in mine):
        return []
    return mine


def _validate(vol: Volume, root: SignedRoot, where: str) -> None:
    """The volume file must describe pieces of signed files, with safe, expected names."""
    if vol.sums_sha256 != root.sums_sha256:
        raise VerificationError(f"{where}: {VOLUME_FILE} names another bundle than the signed root beside it")
    if not 1 <= vol.index <= vol.count:
        raise VerificationError(f"{where}: volume {vol.index} of {vol.count} is not a valid number")
    for p in vol.pieces:
        if p.file not in root.listed or p.file == MANIFEST:
            raise VerificationError(f"{where}: piece {p.name!r} is of a file the bundle does not list")
        entry = root.entries.get(p.file)
        if entry is None or entry.size != p.size or not (0 <= p.offset and 0 <= p.length
                                                         and p.offset + p.length <= p.size):
            raise VerificationError(f"{where}: piece {p.name!r} does not fit its file")
        m = _PART.match(p.name)
        if path_problem(p.name) or not (p.name == p.file if p.whole else (m and m.group(1) == p.file)):
            raise VerificationError(f"{where}: piece name {p.name!r} is not what airpack writes")
    if why := vol.base_problem(root.listed):
        raise VerificationError(f"{where}: {VOLUME_FILE} of a delta split is unsound: {why}")


def _read_volume(folder: Path, keys: Sequence[PublicKey]) -> tuple[Volume, SignedRoot]:
    require_folder(folder, "volume")
    root = signed_root(folder, keys)
    try:
        data = read_capped(folder / VOLUME_FILE, MAX_VOLUME_FILE_BYTES)
    except FileNotFoundError:
        raise VerificationError(f"{folder}: no {VOLUME_FILE}: not a volume of a split bundle") from None
    except OSError as exc:
        raise VerificationError(f"{folder}: unusable {VOLUME_FILE}: {exc}") from None
    vol = Volume.from_json(data, str(folder))
    _validate(vol, root, str(folder))
    return vol, root


def is_volume(folder: Path) -> bool:
    return (folder / VOLUME_FILE).is_file()


def _structure_problems(folder: Path, vol: Volume) -> list[str]:
    """Anything in the folder that is not a regular file the volume names (links, devices, strays)."""
    expected = {p.name for p in vol.pieces} | {*ROOT_FILES, VOLUME_FILE}
    found = walk_entries(folder)
    problems = [f"{rel}: {'not a regular file' if not stat.S_ISREG(mode) else 'not part of the volume'}"
                for rel, mode in sorted(found.items())
                if (rel not in expected and rel not in ATTESTATIONS) or not stat.S_ISREG(mode)]
    problems += [f"{name}: missing" for name in sorted(expected - set(found))]
    return problems


@dataclass(frozen=True)
class VolumeReport:
    index: int
    count: int
    name: str
    version: str
    pieces: int
    bytes: int
    key_fingerprint: str


def verify_volume(folder: Path, keys: Sequence[PublicKey], *, reporter: Reporter | None = None) -> VolumeReport:
    """Check one volume on its own: signed root, every piece against it, nothing else in the folder."""
    vol, root = _read_volume(folder, keys)
    problems = _structure_problems(folder, vol)
    problems += verify.sig_extras(folder, keys, root)  # the volume's copy of signatures/*, checked as in the bundle
    jobs: list[RangeCheck] = []
    for piece in vol.pieces:
        checks = piece_checks(piece, folder / piece.name, root)
        if not checks:
            problems.append(f"{piece.name}: cannot be checked on its own (not on chunk boundaries)")
        jobs.extend(replace(j, key=piece.name) for j in checks)
    reporter = reporter or Silent()
    advance = reporter.task("verifying volume", sum(j.length for j in jobs))
    results = check_ranges(jobs, progress=advance)
    reporter.done(advance)
    problems.extend(f"{name}: does not match the signed bundle" for name, ok in sorted(results.items()) if not ok)
    if problems:
        raise VerificationError(f"{folder}: volume {vol.index} of {vol.count} failed: {len(problems)} problem"
                                f"{'s' if len(problems) != 1 else ''} (first: {problems[0]})")
    return VolumeReport(vol.index, vol.count, vol.name, vol.version, len(vol.pieces),
                        sum(p.length for p in vol.pieces), root.key_fingerprint)


# ------------------------------------------------------------------------------------------ copying a piece

def _copy_piece(src: Path, src_base: int, dst_fd: int, dst_base: int, piece: Piece, checks: list[RangeCheck],
                progress: Progress | None) -> bool:
    """Copy the piece's bytes from ``src`` to ``dst_fd``, hashing them as they pass; whether all checks passed.

    File offset ``o`` of the bundle file is at ``o - src_base`` in ``src`` and ``o - dst_base`` in the
    destination (split: from the bundle file into a piece file; join: from a piece file into the bundle file).
    Without checks (a piece not provable alone) the bytes are copied and proven later with the whole file.
    """
    fd = open_regular(src)
    try:
        if os.fstat(fd).st_size < piece.offset + piece.length - src_base:
            return False
        spans = checks or [RangeCheck(src, piece.name, piece.offset, piece.length, "")]
        view = memoryview(bytearray(BLOCK_SIZE))
        ok = True
        for job in spans:
            h = job.hasher()
            pos, end = job.offset, job.offset + job.length
            while pos < end:
                n = os.preadv(fd, [view[: min(BLOCK_SIZE, end - pos)]], pos - src_base)
                if n == 0:
                    return False
                h.update(view[:n])
                written = 0
                while written < n:
                    written += os.pwrite(dst_fd, view[written:n], pos - dst_base + written)
                pos += n
                if progress:
                    progress(n)
            ok = ok and (not checks or job.matches(h, job.length))
        return ok
    finally:
        os.close(fd)


def split_bundle(bundle: Path, keys: Sequence[PublicKey], out: Path, capacity: int, *,
                 max_file: int | None = None, only: int | None = None,
                 reporter: Reporter | None = None, base: BaseRef | None = None) -> list[Volume]:
    """Write the volumes of ``bundle`` into ``out`` (each folder appears whole, with one rename); with ``base``,
    leave out the files it names (``airpack.delta`` decides which)."""
    root = signed_root(bundle, keys)
    carried = sum((bundle / a).stat().st_size for a in ATTESTATIONS if (bundle / a).is_file())  # in each volume
    skip = set(base.files) if base else set()
    kept = replace(root, listed={p: h for p, h in root.listed.items() if p not in skip})
    volumes = [replace(v, base=base) for v in plan_volumes(kept, capacity - carried, max_file=max_file)]
    if only is not None and not 1 <= only <= len(volumes):
        raise UsageError(f"--volume {only}: this split has {len(volumes)} volume(s)")
    out.mkdir(parents=True, exist_ok=True)
    todo = [v for v in volumes if only is None or v.index == only]
    reporter = reporter or Silent()
    progress = reporter.task("writing volumes", sum(p.length for v in todo for p in v.pieces))
    for vol in todo:
        check_space(out, sum(p.length for p in vol.pieces) + sum((bundle / n).stat().st_size for n in ROOT_FILES),
                    f"volume {vol.index} of {vol.count}", hint="use a larger medium or a smaller --size")
        final = out / vol.folder_name
        if final.exists():
            raise UsageError(f"{final} already exists", hint="remove it or write to another folder")
        stage = out / f".{vol.folder_name}.partial"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        try:
            _copy_root(bundle, stage)
            for piece in vol.pieces:
                dst = stage / piece.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                checks = piece_checks(piece, bundle / piece.file, root)
                with dst.open("wb") as fh:
                    ok = _copy_piece(bundle / piece.file, 0, fh.fileno(), piece.offset, piece, checks, progress)
                    os.fsync(fh.fileno())
                if not ok:
                    raise VerificationError(f"{bundle / piece.file}: does not match the signed bundle",
                                            hint="run 'airpack verify' on the bundle")
            atomic_write_bytes(stage / VOLUME_FILE, vol.to_json())
            stage.replace(final)
            fsync_dir(out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    reporter.done(progress)
    return volumes


def _copy_root(src: Path, dst: Path) -> None:
    """The signed root, and the ``signatures/*`` a signed bundle carries (each volume has them all)."""
    for name in (*ROOT_FILES, *(a for a in ATTESTATIONS if (src / a).is_file())):
        (dst / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(src / name, dst / name, follow_symlinks=False)


# -------------------------------------------------------------------------------------------------- joining

@dataclass(frozen=True)
class JoinResult:
    out: Path
    complete: bool
    volumes_seen: tuple[int, ...]
    count: int
    missing: tuple[int, ...]
    added_bytes: int
    missing_files: int = 0


def join_volumes(volumes: Sequence[Path], keys: Sequence[PublicKey], out: Path, *,
                 reporter: Reporter | None = None,
                 extra: Sequence[tuple[Path, Volume, SignedRoot]] = ()) -> JoinResult:
    """Add the pieces of ``volumes`` to the bundle being joined at ``out``; publish it once complete.

    Resumable and idempotent: a staging folder beside ``out`` keeps the pieces already in (one JSON state,
    replaced atomically after each piece), so volumes can come one run at a time and a pulled disk costs only
    the piece being copied.
    """
    refuse_nested(out, volumes)
    if out.exists():
        raise UsageError(f"{out} already exists", hint="join into a new folder")
    stage = out.parent / f".{out.name}.airpack-join"
    state_path = stage / "state.json"
    state: dict[str, Any] = {}
    if state_path.is_file() and (stage / "bundle" / SUMS).is_file():
        with contextlib.suppress(ValueError):
            state = json.loads(state_path.read_text())
    done: set[tuple[str, int, int]] = {(str(f), int(o), int(n)) for f, o, n in state.get("done", ())}
    origin = {(str(f), int(o), int(n)): int(i) for f, o, n, i in state.get("origin", ())}  # span → its volume
    seen: set[int] = set(state.get("volumes", ()))
    unchecked: set[str] = set(state.get("unchecked", ()))
    added = 0
    root: SignedRoot | None = None
    count = int(state.get("count", 0))
    read = [(folder, *_read_volume(folder, keys)) for folder in volumes]  # every volume is checked first
    for folder, vol, _ in read:
        if problems := _structure_problems(folder, vol):
            raise VerificationError(f"{folder}: volume {vol.index} of {vol.count}: {problems[0]}")
    read.extend(extra)  # more sources, already checked by the caller: a delta's base (volume number 0)
    need = {(p.file, p.offset, p.length) for _, vol, _ in read for p in vol.pieces} - done
    out.parent.mkdir(parents=True, exist_ok=True)
    check_space(out.parent, sum(n for _, _, n in need), "the pieces to join", hint="free some space")
    reporter = reporter or Silent()
    progress = reporter.task("joining", sum(n for _, _, n in need))
    for folder, vol, vroot in read:
        if state.get("sums") not in (None, vroot.sums_sha256) or (state and vol.count != count):
            raise VerificationError(f"{folder}: volume of another bundle or build than the one being joined "
                                    f"at {out}", hint=f"finish that join, or remove {stage} to start over")
        if not state:
            stage.mkdir(parents=True, exist_ok=True)
            (stage / "bundle").mkdir(exist_ok=True)
            _copy_root(folder, stage / "bundle")
            state = {"sums": vroot.sums_sha256, "count": vol.count}
            count = vol.count
        root = vroot
        for piece in vol.pieces:
            key = (piece.file, piece.offset, piece.length)
            if key in done:
                continue
            if touched := overlapping(done, *key):  # about to be overwritten: proven no more, saved first
                done -= touched
                seen -= {origin.pop(t) for t in touched if t in origin}
                state.update(done=sorted(done), volumes=sorted(seen), origin=[[*t, i] for t, i in origin.items()])
                atomic_write_bytes(state_path, json.dumps(state).encode())
            dst = stage / "bundle" / piece.file
            dst.parent.mkdir(parents=True, exist_ok=True)
            checks = piece_checks(piece, folder / piece.name, vroot)
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                if os.fstat(fd).st_size != piece.size:
                    os.ftruncate(fd, piece.size)
                ok = _copy_piece(folder / piece.name, piece.offset, fd, 0, piece, checks, progress)
                os.fsync(fd)
            finally:
                os.close(fd)
            if not ok:
                raise VerificationError(f"{folder / piece.name}: does not match the signed bundle",
                                        hint="this medium returned other bytes; copy that volume again")
            if not checks:
                unchecked.add(piece.file)
            done.add(key)
            origin[key] = vol.index
            added += piece.length
            state.update(done=sorted(done), unchecked=sorted(unchecked), origin=[[*t, i] for t, i in origin.items()])
            atomic_write_bytes(state_path, json.dumps(state).encode())
        seen.update({vol.index} - {0})  # only once all of its pieces are in
        state.update(volumes=sorted(seen))
        atomic_write_bytes(state_path, json.dumps(state).encode())
    reporter.done(progress)
    if root is None:
        root = signed_root(stage / "bundle", keys)
    missing = missing_files(root, done)
    complete = not missing
    if complete and (bad := _finish(stage, root, unchecked, out)):  # none of their bytes count as proven now
        seen -= {i for t, i in origin.items() if t[0] in bad}
        state.update(done=sorted(s for s in done if s[0] not in bad), unchecked=sorted(unchecked - set(bad)),
                     volumes=sorted(seen), origin=[[*t, i] for t, i in origin.items() if t[0] not in bad])
        atomic_write_bytes(state_path, json.dumps(state).encode())
        raise VerificationError(f"{bad[0]}: joined bytes do not match the signed bundle",
                                hint="join the volumes that hold it again")
    missing_vols = tuple(i for i in range(1, count + 1) if i not in seen) if not complete else ()
    return JoinResult(out, complete, tuple(sorted(seen)), count, missing_vols, added, len(missing))


def _finish(stage: Path, root: SignedRoot, unchecked: set[str], out: Path) -> list[str]:
    """Check the files joined from pieces not provable alone, then publish; the files that failed, if any."""
    bundle = stage / "bundle"
    if unchecked:
        jobs = [j for rel in sorted(unchecked) for j in checks_for(bundle / rel, rel, root.entries[rel].size,
                                                                  root.listed[rel], root.entries.get(rel))]
        if bad := sorted(k for k, ok in check_ranges(jobs).items() if not ok):
            return bad
    bundle.replace(out)
    fsync_dir(out.parent)
    shutil.rmtree(stage, ignore_errors=True)
    return []
