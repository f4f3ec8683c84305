"""Streaming SHA-256: whole-file and chunk digests, parallel range checks, and refusing non-regular files."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from airpack.hashing import DigestSink, RangeCheck, check_ranges, copy_and_hash, hash_file, sha256_bytes

DATA = random.Random(1).randbytes(1_000_003)  # noqa: S311 - test data; not a multiple of anything


def chunks_of(data: bytes, size: int) -> tuple[str, ...]:
    if len(data) <= size:
        return ()
    return tuple(hashlib.sha256(data[i:i + size]).hexdigest() for i in range(0, len(data), size))


@pytest.mark.parametrize("chunk_size", [4096, 10_000, 100_000, 999_999, 1_000_003, 4 * 1024 * 1024])
@pytest.mark.parametrize("block", [1, 7, 4096, 333_333])
def test_digest_sink_chunks_match_hashlib_over_slices(chunk_size: int, block: int) -> None:
    data = DATA if block >= 4096 else DATA[:25_001]  # tiny blocks: a smaller file, same boundaries
    sink = DigestSink(chunk_size)
    for i in range(0, len(data), block):
        sink.update(data[i:i + block])
    d = sink.close()
    assert d.size == len(data) and d.sha256 == hashlib.sha256(data).hexdigest()
    assert d.chunk_size == chunk_size
    assert d.chunks == chunks_of(data, chunk_size)
    assert sink.close() == d  # idempotent


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 2048, 2049])
def test_chunk_boundaries(size: int) -> None:
    data = DATA[:size]
    sink = DigestSink(1024)
    sink.update(data)
    d = sink.close()
    assert d.chunks == chunks_of(data, 1024)
    assert len(d.chunks) == (0 if size <= 1024 else -(-size // 1024))


def test_hash_file_and_copy_and_hash(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    seen: list[int] = []
    d = hash_file(src, chunk_size=300_000, progress=seen.append)
    assert (d.size, d.sha256, d.chunks) == (len(DATA), sha256_bytes(DATA), chunks_of(DATA, 300_000))
    assert sum(seen) == len(DATA)
    out = io.BytesIO()
    assert copy_and_hash(src, out, chunk_size=300_000) == d
    assert out.getvalue() == DATA


def test_hash_file_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        hash_file(tmp_path / "link")
    with pytest.raises(OSError):
        copy_and_hash(tmp_path / "link", io.BytesIO())


@pytest.mark.timeout(10)
def test_hash_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        hash_file(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        copy_and_hash(tmp_path / "fifo", io.BytesIO())


def test_hash_file_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        hash_file(tmp_path)


def _jobs(path: Path, data: bytes, size: int, key: str = "f") -> list[RangeCheck]:
    return [RangeCheck(path, key, off, min(size, len(data) - off), hashlib.sha256(data[off:off + size]).hexdigest())
            for off in range(0, len(data), size)]


def test_check_ranges_passes_and_flags_a_mismatching_chunk(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(DATA)
    b.write_bytes(DATA)
    jobs = _jobs(a, DATA, 100_000, "a") + _jobs(b, DATA, 100_000, "b")
    assert check_ranges(jobs, workers=3) == {"a": True, "b": True}
    tampered = bytearray(DATA)
    tampered[550_000] ^= 1  # inside the sixth chunk only
    b.write_bytes(bytes(tampered))
    seen: list[int] = []
    assert check_ranges(jobs, workers=2, progress=seen.append) == {"a": True, "b": False}
    assert sum(seen) == 2 * len(DATA)
    only_bad = [j for j in jobs if j.key == "b" and j.offset == 500_000]
    assert check_ranges(only_bad) == {"b": False}
    assert check_ranges([j for j in jobs if j.key == "b" and j.offset != 500_000]) == {"b": True}


def test_check_ranges_truncated_or_unreadable_file_is_a_mismatch(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(DATA)
    jobs = _jobs(f, DATA, 400_000)
    f.write_bytes(DATA[:700_000])
    assert check_ranges(jobs) == {"f": False}
    f.unlink()
    assert check_ranges(jobs) == {"f": False}
    (tmp_path / "g").symlink_to(tmp_path / "f2")
    (tmp_path / "f2").write_bytes(DATA)
    assert check_ranges(_jobs(tmp_path / "g", DATA, 400_000)) == {"f": False}
