"""Hugging Face cache source (``model.cache``): take a model someone already downloaded, without the network.

Layout (huggingface_hub's): ``<cache>/models--owner--name/refs/<revision>`` holds a commit sha;
``snapshots/<commit>/<path>`` are symlinks to ``../../blobs/<etag>``, where the etag is the sha256 for LFS
files and the git blob id for small ones. Since huggingface_hub 1.30 a blob of a Xet file may itself link into
the cache-wide store ``<cache>/blobs/<xx>/<xet hash>``.

A link is followed only when it resolves inside that repo's folder or that shared store; anything else (a
link to ``/etc``, to another user's files, to another repo) is refused. At lock time an LFS file's sha256 is
taken from its blob name, as the Hub's listing would give it, so locking reads no weights; small files are
read and checked against their git blob id. A lock from the cache therefore equals a lock from the Hub at
the same commit. Fetching reads every byte once, hashing while copying, and refuses any mismatch.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, cast

from airpack._fs import atomic_writer, path_problem, walk_tree
from airpack.errors import FetchError, SourceError
from airpack.hashing import FileDigest, Progress, copy_and_hash, hash_file
from airpack.lock import LockedFile, LockedModel, check_bundle_paths
from airpack.selection import select_files
from airpack.sources._common import DEFAULT_WORKERS, HEX40, HEX64, MAX_SMALL_FILE, check_locked, gather
from airpack.sources._store import git_blob_id, mismatch
from airpack.spec import ModelSpec

SHARED_BLOBS_MARKER = ".huggingface-shared-blobs"


def repo_folder(cache: Path, repo: str) -> Path:
    """``<cache>/models--owner--name``, as huggingface_hub's ``repo_folder_name`` builds it."""
    return cache / ("models--" + repo.replace("/", "--"))


def _resolve_commit(folder: Path, revision: str) -> str:
    if HEX40.match(revision) and (folder / "snapshots" / revision).is_dir():
        return revision
    problem = path_problem(revision)
    ref = folder / "refs" / revision
    try:
        if problem or ref.is_symlink() or not ref.is_file():
            raise FileNotFoundError(revision)
        commit = ref.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise SourceError(f"model.revision: {revision!r} is not in the Hugging Face cache at {folder}",
                          hint="download that revision first ('hf download --revision'), or give a commit sha"
                          ) from None
    if not HEX40.match(commit) or not (folder / "snapshots" / commit).is_dir():
        raise SourceError(f"model.revision: {ref} points to a commit with no snapshot in the cache",
                          hint="download the model again with 'hf download'")
    return commit


def _list_snapshot(snapshot: Path) -> list[str]:
    """Every file below the snapshot (links included) as a relative path; a linked folder is refused. The walk
    is iterative (no RecursionError however deep the folders)."""
    out: list[str] = []
    for rel, mode in walk_tree(snapshot):
        if stat.S_ISLNK(mode) and (snapshot / rel).is_dir():
            raise SourceError(f"model.cache: {snapshot / rel} is a linked folder, which is not followed")
        if not stat.S_ISDIR(mode):
            out.append(rel)
    return out


class _Snapshot:
    """One cached commit of one repo, with the rule for which links may be followed."""

    def __init__(self, model: ModelSpec, cache: Path) -> None:
        if not model.repo:
            raise SourceError("model.repo: not set")
        self.repo = model.repo
        self.folder = repo_folder(cache, model.repo)
        if not self.folder.is_dir():
            raise SourceError(f"model.cache: {model.repo} is not in the Hugging Face cache at {cache}",
                              hint="download it first with 'hf download', or check model.cache")
        shared = cache / "blobs"
        self.roots = [self.folder.resolve()]
        if (shared / SHARED_BLOBS_MARKER).is_file():
            self.roots.append(shared.resolve())
        self.commit = _resolve_commit(self.folder, model.revision)
        self.path = self.folder / "snapshots" / self.commit

    def resolve(self, rel: str) -> tuple[Path, str | None]:
        """The real file behind ``rel`` and the blob name its link points to (the etag), after the link check."""
        entry = self.path / rel
        real = Path(os.path.realpath(entry))
        if not any(real.is_relative_to(root) for root in self.roots):
            raise SourceError(f"model.cache: {entry} links outside the Hugging Face cache of {self.repo} "
                              f"({real}); it is not followed",
                              hint="remove the link, or download the model again with 'hf download'")
        try:
            st = real.stat()
        except FileNotFoundError:
            raise SourceError(f"model.cache: {entry} is a dangling link (its blob is gone)",
                              hint="download the model again with 'hf download'") from None
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"model.cache: {entry} is not a regular file")
        etag = entry.readlink().name if entry.is_symlink() else None
        return real, etag


def _lock_cached_file(snap: _Snapshot, rel: str) -> LockedFile:
    real, etag = snap.resolve(rel)
    size = real.stat().st_size
    if etag and HEX64.match(etag):
        return LockedFile(rel, size, etag)  # LFS: the blob's name is its sha256; checked when fetched
    if size > MAX_SMALL_FILE:
        return LockedFile(rel, size, hash_file(real).sha256)
    data = real.read_bytes()
    blob_id = git_blob_id(data)
    if etag and HEX40.match(etag) and blob_id != etag:
        raise SourceError(f"model.cache: {snap.path / rel}: its content does not match its git blob id {etag}",
                          hint="the cache is damaged; download the model again with 'hf download'")
    return LockedFile(rel, len(data), hashlib.sha256(data).hexdigest(), blob_id if etag else None)


def lock_from_hf_cache(model: ModelSpec, cache: Path) -> LockedModel:
    """Lock a model from an existing Hugging Face cache folder (``model.cache``), with no network access."""
    snap = _Snapshot(model, cache)
    sel = select_files(_list_snapshot(snap.path), include=model.files, exclude=model.exclude,
                       allow_pickle=model.allow_pickle, allow_code=model.allow_code)
    if not sel.selected:
        raise SourceError(f"model.files: no files selected in {snap.path}",
                          hint="check model.files and model.exclude")
    check_bundle_paths(list(sel.selected), "model.cache")
    files = tuple(_lock_cached_file(snap, rel) for rel in sel.selected)
    return LockedModel(source="hf-cache", files=files, excluded=sel.excluded, repo=snap.repo,
                       revision=model.revision, commit=snap.commit)


def fetch_hf_cache(
    model: LockedModel,
    dest_dir: Path,
    *,
    cache: Path,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, FileDigest]:
    """Copy every locked file from the Hugging Face cache to ``dest_dir/<path>``, verified against the lock."""
    repo, commit = check_locked(model, "hf-cache")
    snap = _Snapshot(ModelSpec(repo=repo, revision=commit), cache)

    def one(f: LockedFile) -> FileDigest:
        real, _ = snap.resolve(f.path)
        try:
            with atomic_writer(dest_dir / f.path) as fh:
                digest = copy_and_hash(real, cast(BinaryIO, fh), progress=progress)
                blob_id = git_blob_id(real.read_bytes()) if f.blob_id and digest.size == f.size else None
                problem = mismatch(f, digest, blob_id)
                if problem:
                    (dest_dir / f.path).unlink(missing_ok=True)
                    raise FetchError(f"{f.path}: the cached bytes do not match the lock ({problem}); "
                                     "nothing was kept", hint="the Hugging Face cache changed since it was "
                                     "locked; run 'airpack lock' again")
        except OSError as exc:
            raise FetchError(f"{f.path}: {exc.strerror or exc} ({exc.filename or real})") from None
        return digest

    return gather(model.files, one, workers)
