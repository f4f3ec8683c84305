"""Streaming SHA-256 at the hardware limit, with bounded memory.

Every file is hashed whole (for ``SHA256SUMS`` and ``sha256sum -c``) and, when larger than ``CHUNK_SIZE``,
also in fixed-size chunks whose digests are signed in ``airpack.json``: the chunks of one multi-GB file can
then be checked on every core at once, where a whole-file SHA-256 is inherently sequential.

hashlib releases the GIL while hashing buffers larger than 2 KiB, so plain threads scale across cores.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 64 * 1024 * 1024
BLOCK_SIZE = 1024 * 1024

Progress = Callable[[int], None]


@dataclass(frozen=True)
class FileDigest:
    """Size, whole-file SHA-256 and (for files over ``chunk_size``) per-chunk SHA-256 digests."""

    size: int
    sha256: str
    chunk_size: int = CHUNK_SIZE
    chunks: tuple[str, ...] = ()


def default_workers() -> int:
    """Threads for parallel hashing: one per core the process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class DigestSink:
    """Feed bytes in order; get the whole-file and chunk digests, both computed on background threads.

    Used by every path that moves bytes (local copy, Hub download, registry blob) so each byte is read
    once and hashed as it passes, while the caller's thread only moves bytes: receiving and writing, the
    whole-file hash and the chunk hashes then run on three cores at once (measured on a 2-core VM: a 512 MiB
    registry download with write+hash pipelined took 0.64 s, in one thread 1.05 s).

    The first chunk's digest is the whole-file hasher's state at the first boundary (``hashlib`` ``copy``),
    so a file no larger than one chunk is hashed exactly once and only the later chunks cost a second pass.
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self._chunk_size = chunk_size
        self._size = 0
        self._first_chunk: str | None = None
        self._chunks: list[str] = []
        self._whole_hex = ""
        # Bounded queues keep memory flat: at most 8 blocks wait for each hasher (the blocks are shared).
        self._whole_q: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=8)
        self._chunk_q: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=8)
        self._threads = [threading.Thread(target=self._whole_worker, daemon=True),
                         threading.Thread(target=self._chunk_worker, daemon=True)]
        for t in self._threads:
            t.start()
        self._closed = False

    def _whole_worker(self) -> None:
        h = hashlib.sha256()
        seen = 0
        while (data := self._whole_q.get()) is not None:
            if self._first_chunk is None and seen + len(data) >= self._chunk_size:
                view = memoryview(data)
                cut = self._chunk_size - seen
                h.update(view[:cut])
                self._first_chunk = h.copy().hexdigest()
                h.update(view[cut:])
            else:
                h.update(data)
            seen += len(data)
        self._whole_hex = h.hexdigest()

    def _chunk_worker(self) -> None:
        """Digests of chunks 1, 2, …: bytes from offset ``chunk_size`` on (chunk 0 comes from the whole hasher)."""
        h = hashlib.sha256()
        fill = 0
        while (data := self._chunk_q.get()) is not None:
            view = memoryview(data)
            while view:
                take = min(len(view), self._chunk_size - fill)
                h.update(view[:take])
                fill += take
                view = view[take:]
                if fill == self._chunk_size:
                    self._chunks.append(h.hexdigest())
                    h, fill = hashlib.sha256(), 0
        if fill:
            self._chunks.append(h.hexdigest())

    def update(self, data: bytes | memoryview) -> None:
        """Hash ``data``; the caller must not modify it afterwards (pass immutable bytes)."""
        if not data:
            return
        self._whole_q.put(data)
        if self._size >= self._chunk_size:
            self._chunk_q.put(data)
        elif self._size + len(data) > self._chunk_size:
            self._chunk_q.put(memoryview(data)[self._chunk_size - self._size:])
        self._size += len(data)

    def close(self) -> FileDigest:
        """Finish and return the digests (idempotent)."""
        if not self._closed:
            self._whole_q.put(None)
            self._chunk_q.put(None)
            for t in self._threads:
                t.join()
            self._closed = True
        if self._size <= self._chunk_size:
            return FileDigest(self._size, self._whole_hex, self._chunk_size, ())
        return FileDigest(self._size, self._whole_hex, self._chunk_size, (self._first_chunk or "", *self._chunks))


def _open_regular(path: Path) -> int:
    """Open for reading without following a final symlink, and insist on a regular file."""
    # O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer appears (no effect on files).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return fd


def _advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def hash_file(path: Path, *, chunk_size: int = CHUNK_SIZE, progress: Progress | None = None) -> FileDigest:
    """Digest one file in a single read pass."""
    return copy_and_hash(path, None, chunk_size=chunk_size, progress=progress)


def copy_and_hash(
    src: Path, dst: BinaryIO | None, *, chunk_size: int = CHUNK_SIZE, progress: Progress | None = None
) -> FileDigest:
    """Copy ``src`` into the open file ``dst`` (None: only hash), hashing the bytes as they pass (one read)."""
    fd = _open_regular(src)
    try:
        _advise_sequential(fd)
        sink = DigestSink(chunk_size)
        while block := os.read(fd, BLOCK_SIZE):
            if dst is not None:
                dst.write(block)
            sink.update(block)
            if progress:
                progress(len(block))
        return sink.close()
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RangeCheck:
    """One unit of parallel verification: bytes [offset, offset+length) of ``path`` must hash to ``sha256``."""

    path: Path
    key: str
    offset: int
    length: int
    sha256: str


def _hash_range(job: RangeCheck, progress: Progress | None) -> str:
    fd = _open_regular(job.path)
    try:
        _advise_sequential(fd)
        h = hashlib.sha256()
        buf = bytearray(BLOCK_SIZE)
        view = memoryview(buf)
        pos, end = job.offset, job.offset + job.length
        while pos < end:
            n = os.preadv(fd, [view[: min(BLOCK_SIZE, end - pos)]], pos)
            if n == 0:
                break  # truncated under us: the digest will not match
            h.update(view[:n])
            pos += n
            if progress:
                progress(n)
        return h.hexdigest()
    finally:
        os.close(fd)


def check_ranges(
    jobs: Iterable[RangeCheck], *, workers: int | None = None, progress: Progress | None = None
) -> dict[str, bool]:
    """Hash every range on a thread pool; map each job key to whether its whole file matched.

    A key (a file) is True only when all of its ranges matched. An unreadable file counts as a mismatch.
    """
    ordered = sorted(jobs, key=lambda j: -j.length)  # longest first: better packing across threads
    results: dict[str, bool] = {j.key: True for j in ordered}
    lock = threading.Lock()

    def run(job: RangeCheck) -> None:
        try:
            ok = _hash_range(job, progress) == job.sha256
        except OSError:
            ok = False
        if not ok:
            with lock:
                results[job.key] = False

    # Twice the cores: hashing is CPU-bound when the data is cached, but from a cold disk or USB medium more
    # reads in flight keep the device busy (measured: 2.6 GB cold in 3.0-3.7 s with 4-6 threads, 4.5-6.3 s with 2).
    with ThreadPoolExecutor(max_workers=workers or min(8, 2 * default_workers())) as pool:
        list(pool.map(run, ordered))
    return results


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of an in-memory document."""
    return hashlib.sha256(data).hexdigest()
