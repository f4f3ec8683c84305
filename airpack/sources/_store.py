"""Verified, resumable downloads into airpack's cache, and their placement into a destination folder.

A download goes to ``<cache>/hub/partial/<sha256>.part``, keyed by the sha256 the lock expects, so a cut
download resumes on the next run (an HTTP ``Range`` from the bytes already there) whatever repo or commit
asked for the same content. Bytes are hashed as they are written; only a file whose size, sha256 (and git blob
id, for small files) match the lock is renamed to ``<cache>/hub/blobs/<sha256>`` and then linked (or copied) to
a temporary name beside its destination and renamed into place. A mismatch deletes the partial file: nothing
unverified ever reaches the destination, and the cache is never trusted without hashing what it hands out.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from airpack._fs import fsync_dir, write_pieces
from airpack.errors import FetchError
from airpack.hashing import BLOCK_SIZE, DigestSink, FileDigest, Progress, copy_and_hash, hash_file
from airpack.lock import LockedFile

# Downloader(file object to append to, bytes already in it): writes the rest of the file, or raises.
Downloader = Callable[[BinaryIO, int], None]


def git_blob_id(data: bytes) -> str:
    """The id git (and the Hub) gives a file's content: sha1 of ``blob <len>\\0`` + content."""
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def mismatch(f: LockedFile, digest: FileDigest, blob_id: str | None) -> str | None:
    """How ``digest`` differs from the lock entry, or None when size, sha256 and blob id all match."""
    if digest.size != f.size:
        return f"size {digest.size} != locked {f.size}"
    if digest.sha256 != f.sha256:
        return f"sha256 {digest.sha256[:16]}… != locked {f.sha256[:16]}…"
    if f.blob_id and blob_id != f.blob_id:
        return f"git blob id {(blob_id or '?')[:16]}… != locked {f.blob_id[:16]}…"
    return None


class TooManyBytesError(FetchError):
    """The server sent more bytes than were locked: the partial file can never verify and is deleted."""


class HashingWriter:
    """The file object handed to huggingface_hub's ``http_get``: appends to the partial file, hashing as it goes.

    ``http_get`` rewinds (``seek`` + ``truncate``) when a server ignores a ``Range`` request and sends the whole
    file again; the hashes then restart from the bytes kept. It never writes past the locked size.
    """

    def __init__(self, fh: BinaryIO, locked: LockedFile, progress: Progress | None) -> None:
        self._fh = fh
        self._locked = locked
        self._progress = progress
        self._sink = DigestSink()
        self._git = self._new_git()
        self._pos = 0

    def _new_git(self) -> hashlib._Hash | None:
        if not self._locked.blob_id:
            return None
        return hashlib.sha1(b"blob %d\0" % self._locked.size, usedforsecurity=False)

    def absorb(self, upto: int) -> None:
        """(Re)hash the first ``upto`` bytes already on disk: the part a previous run downloaded."""
        self._sink.close()
        self._sink, self._git, self._pos = DigestSink(), self._new_git(), 0
        self._fh.seek(0)
        while self._pos < upto:
            block = self._fh.read(min(BLOCK_SIZE, upto - self._pos))
            if not block:
                break
            self._update(block)
        self._fh.seek(self._pos)
        self._fh.truncate()

    def _update(self, data: bytes) -> None:
        self._sink.update(data)
        if self._git is not None:
            self._git.update(data)
        self._pos += len(data)
        if self._progress:
            self._progress(len(data))

    def write(self, data: bytes) -> int:
        if self._pos + len(data) > self._locked.size:
            raise TooManyBytesError(f"{self._locked.path}: the server sent more than the {self._locked.size} bytes locked",
                             hint="the source changed since it was locked; run 'airpack lock' again")
        data = bytes(data)
        write_pieces(self._fh, data)  # http_get hands 10 MiB pieces; see airpack._fs
        self._update(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or pos < 0:
            raise OSError("HashingWriter only seeks to an absolute position")
        if pos != self._pos:
            self.absorb(min(pos, self._pos))
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        if size is not None and size != self._pos:
            self.absorb(min(size, self._pos))
        self._fh.truncate(self._pos)
        return self._pos

    def flush(self) -> None:
        self._fh.flush()

    def finish(self) -> tuple[FileDigest, str | None]:
        return self._sink.close(), (self._git.hexdigest() if self._git is not None else None)


class BlobStore:
    """airpack's download cache for one source kind: ``partial/``, ``blobs/`` and ``locks/``, keyed by sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("partial", "blobs", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def partial(self, sha256: str) -> Path:
        return self.root / "partial" / f"{sha256}.part"

    @contextlib.contextmanager
    def locked(self, sha256: str) -> Iterator[None]:
        """One writer per blob, across threads and processes (two builds sharing a cache)."""
        fd = os.open(self.root / "locks" / f"{sha256}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def fetch(self, f: LockedFile, dest: Path, download: Downloader, progress: Progress | None) -> FileDigest:
        """Put the locked file at ``dest``: from the cache if a verified copy is there, else by downloading."""
        with self.locked(f.sha256):
            if self.blob(f.sha256).exists():
                digest = _adopt(self.blob(f.sha256), dest, f, progress)
                if digest is not None:
                    return digest
            digest = self._download(f, dest, download, progress)
            place(self.blob(f.sha256), dest)
            return digest

    def _download(self, f: LockedFile, dest: Path, download: Downloader, progress: Progress | None) -> FileDigest:
        part = self.partial(f.sha256)
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            have = os.fstat(fd).st_size
            writer = HashingWriter(fh, f, progress)
            writer.absorb(have if have <= f.size else 0)
            try:
                if writer.tell() < f.size:
                    download(writer, writer.tell())  # type: ignore[arg-type]
            except TooManyBytesError:
                _discard(part, dest)
                raise
            finally:
                fh.flush()
                os.fsync(fd)
                digest, blob_id = writer.finish()
        if digest.size < f.size:
            raise FetchError(f"{f.path}: the download ended after {digest.size} of {f.size} bytes",
                             hint="run the command again to resume it")
        problem = mismatch(f, digest, blob_id)
        if problem:
            _discard(part, dest)
            raise FetchError(f"{f.path}: the downloaded bytes do not match the lock ({problem}); nothing was kept",
                             hint="the source changed or the transfer was altered; run 'airpack lock' again "
                                  "only if the repo changed on purpose")
        part.replace(self.blob(f.sha256))
        fsync_dir(part.parent)
        return digest


def _discard(part: Path, dest: Path) -> None:
    part.unlink(missing_ok=True)
    dest.unlink(missing_ok=True)


def _tmp_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")


def place(src: Path, dest: Path) -> None:
    """Hard-link (or, across file systems, copy) ``src`` to a temporary name beside ``dest``, then rename."""
    tmp = _tmp_beside(dest)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        tmp.replace(dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _adopt(blob: Path, dest: Path, f: LockedFile, progress: Progress | None) -> FileDigest | None:
    """Place a cached blob at ``dest`` only if its bytes (read once, while linking or copying) match the lock."""
    tmp = _tmp_beside(dest)
    try:
        try:
            os.link(blob, tmp)
            digest = hash_file(tmp, progress=progress)
        except OSError:
            tmp.unlink(missing_ok=True)
            with tmp.open("wb") as fh:
                digest = copy_and_hash(blob, fh, progress=progress)
        blob_id = git_blob_id(tmp.read_bytes()) if f.blob_id and digest.size == f.size else None
        if mismatch(f, digest, blob_id):
            blob.unlink(missing_ok=True)  # a damaged cache entry: download it again
            return None
        tmp.replace(dest)
        fsync_dir(dest.parent)
        return digest
    finally:
        tmp.unlink(missing_ok=True)
