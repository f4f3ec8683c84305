"""Streaming SHA-256: whole-file digests and chunk chaining values, parallel range checks, refusing non-regular
files, and the fallback where libcrypto's SHA-256 state cannot be reached."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
from pathlib import Path

import pytest

from airpack import sha256_state
from airpack.hashing import (
    DigestSink,
    RangeCheck,
    chain_checks,
    check_ranges,
    copy_and_hash,
    hash_file,
    sha256_bytes,
)
from airpack.sha256_state import Sha256State
from tests import sha256_ref

DATA = random.Random(1).randbytes(1_000_003)  # noqa: S311 - test data; not a multiple of anything
SMALL = DATA[:25_001]


def test_the_reference_implementation_agrees_with_hashlib() -> None:
    for n in (0, 3, 55, 56, 63, 64, 65, 1000):
        assert sha256_ref.digest(SMALL[:n]) == hashlib.sha256(SMALL[:n]).hexdigest()


def chain_by_resuming(data: bytes, chunk_size: int, chain: tuple[str, ...]) -> bool:
    """Each chunk, hashed from the value before it, ends at the value after it; the last one at the digest."""
    values = (None, *chain)
    for i, start in enumerate(values):
        h = Sha256State(start, i * chunk_size)
        h.update(data[i * chunk_size:(i + 1) * chunk_size])
        end = h.hexdigest() if i == len(chain) else h.chain()
        if end != (hashlib.sha256(data).hexdigest() if i == len(chain) else chain[i]):
            return False
    return True


@pytest.mark.parametrize("chunk_size", [64, 1024, 4096, 10_048, 25_024, 25_088])
@pytest.mark.parametrize("block", [1, 7, 4096, 8_333])
def test_digest_sink_chain_matches_an_independent_sha256(chunk_size: int, block: int) -> None:
    sink = DigestSink(chunk_size)
    for i in range(0, len(SMALL), block):
        sink.update(SMALL[i:i + block])
    d = sink.close()
    assert d.size == len(SMALL) and d.sha256 == hashlib.sha256(SMALL).hexdigest()
    assert d.chunk_size == chunk_size
    expected = sha256_ref.chain_values(SMALL, chunk_size) if len(SMALL) > chunk_size else ()
    assert d.chain == expected
    assert sink.close() == d  # idempotent


@pytest.mark.parametrize("chunk_size", [4096, 100_032, 999_936, 1_000_064, 4 * 1024 * 1024])
@pytest.mark.parametrize("block", [4096, 333_333])
def test_digest_sink_chain_resumes_to_the_digest(chunk_size: int, block: int) -> None:
    sink = DigestSink(chunk_size)
    for i in range(0, len(DATA), block):
        sink.update(DATA[i:i + block])
    d = sink.close()
    assert d.sha256 == hashlib.sha256(DATA).hexdigest()
    assert len(d.chain) == (0 if len(DATA) <= chunk_size else -(-len(DATA) // chunk_size) - 1)
    assert chain_by_resuming(DATA, chunk_size, d.chain)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 2048, 2049, 3072])
def test_chunk_boundaries(size: int) -> None:
    data = SMALL[:size]
    sink = DigestSink(1024)
    sink.update(data)
    d = sink.close()
    assert len(d.chain) == (0 if size <= 1024 else -(-size // 1024) - 1)
    assert d.chain == (sha256_ref.chain_values(data, 1024) if size > 1024 else ())


def test_a_chunk_size_must_be_whole_sha256_blocks() -> None:
    for bad in (0, -64, 100, 1_000_003):
        with pytest.raises(ValueError, match="multiple of 64"):
            DigestSink(bad)


def test_state_is_only_a_chaining_value_at_a_block_boundary() -> None:
    h = Sha256State()
    h.update(b"x" * 65)
    with pytest.raises(ValueError, match="multiple of 64"):
        h.chain()
    with pytest.raises(ValueError, match="multiple of 64"):
        Sha256State("00" * 32, 100)


def test_update_takes_bytes_bytearrays_and_views() -> None:
    h = Sha256State()
    h.update(SMALL[:1000])
    h.update(bytearray(SMALL[1000:2000]))
    h.update(memoryview(SMALL)[2000:3000])  # read-only view
    h.update(memoryview(bytearray(SMALL[3000:4000])))
    h.update_slice(SMALL, 4000, 5000)
    assert h.count == 5000 and h.hexdigest() == hashlib.sha256(SMALL[:5000]).hexdigest()


def test_without_libcrypto_state_files_are_hashed_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sha256_state, "AVAILABLE", False)
    sink = DigestSink(1024)
    sink.update(SMALL)
    d = sink.close()
    assert (d.sha256, d.chain) == (hashlib.sha256(SMALL).hexdigest(), ())
    f = tmp_path / "f"
    f.write_bytes(SMALL)
    chain = sha256_ref.chain_values(SMALL, 1024)
    (job,) = chain_checks(f, "f", len(SMALL), d.sha256, 1024, chain)  # a signed chain, checked whole instead
    assert (job.offset, job.length, job.start, job.final) == (0, len(SMALL), None, True)
    assert check_ranges([job]) == {"f": True}


def test_hash_file_and_copy_and_hash(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    seen: list[int] = []
    d = hash_file(src, chunk_size=300_032, progress=seen.append)
    assert (d.size, d.sha256, len(d.chain)) == (len(DATA), sha256_bytes(DATA), 3)
    assert chain_by_resuming(DATA, 300_032, d.chain)
    assert sum(seen) == len(DATA)
    out = io.BytesIO()
    assert copy_and_hash(src, out, chunk_size=300_032) == d
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
    return chain_checks(path, key, len(data), hashlib.sha256(data).hexdigest(), size,
                        sha256_ref.chain_values(data, size) if len(data) <= 30_000 else _chain(data, size))


def _chain(data: bytes, size: int) -> tuple[str, ...]:
    sink = DigestSink(size)
    sink.update(data)
    return sink.close().chain


def test_chain_checks_cover_the_file_once() -> None:
    jobs = _jobs(Path("f"), DATA, 100_032)
    assert [(j.offset, j.length) for j in jobs] == [(o, min(100_032, len(DATA) - o)) for o in range(0, len(DATA), 100_032)]
    assert [j.final for j in jobs] == [False] * 9 + [True]
    assert jobs[0].start is None and all(j.start == p.expect for p, j in itertools.pairwise(jobs))
    assert jobs[-1].expect == hashlib.sha256(DATA).hexdigest()
    assert chain_checks(Path("f"), "f", 10, "ab" * 32, 64, ()) == [RangeCheck(Path("f"), "f", 0, 10, "ab" * 32)]


def test_check_ranges_passes_and_flags_a_mismatching_chunk(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(DATA)
    b.write_bytes(DATA)
    jobs = _jobs(a, DATA, 100_032, "a") + _jobs(b, DATA, 100_032, "b")
    assert check_ranges(jobs, workers=3) == {"a": True, "b": True}
    tampered = bytearray(DATA)
    tampered[550_000] ^= 1  # inside the sixth chunk only
    b.write_bytes(bytes(tampered))
    seen: list[int] = []
    assert check_ranges(jobs, workers=2, progress=seen.append) == {"a": True, "b": False}
    assert sum(seen) == 2 * len(DATA)
    only_bad = [j for j in jobs if j.key == "b" and j.offset == 500_160]
    assert check_ranges(only_bad) == {"b": False}
    assert check_ranges([j for j in jobs if j.key == "b" and j.offset != 500_160]) == {"b": True}


def test_a_format_1_chunk_digest_is_checked_fresh(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(DATA)
    jobs = [RangeCheck(f, "f", o, min(100_000, len(DATA) - o), hashlib.sha256(DATA[o:o + 100_000]).hexdigest())
            for o in range(0, len(DATA), 100_000)]
    assert check_ranges(jobs) == {"f": True}
    assert check_ranges([*jobs[:-1], RangeCheck(f, "f", 1_000_000, 3, "00" * 32)]) == {"f": False}


def test_check_ranges_truncated_or_unreadable_file_is_a_mismatch(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(DATA)
    jobs = _jobs(f, DATA, 400_000 - 400_000 % 64)
    f.write_bytes(DATA[:700_000])
    assert check_ranges(jobs) == {"f": False}
    f.unlink()
    assert check_ranges(jobs) == {"f": False}
    (tmp_path / "g").symlink_to(tmp_path / "f2")
    (tmp_path / "f2").write_bytes(DATA)
    assert check_ranges(_jobs(tmp_path / "g", DATA, 399_936)) == {"f": False}


def test_one_large_update_is_queued_in_pieces() -> None:
    data = random.Random(2).randbytes(9 * 1024 * 1024 + 5)  # noqa: S311 - test data
    sink = DigestSink(2 * 1024 * 1024)
    sink.update(data)  # more than two 4 MiB pieces
    d = sink.close()
    assert d.sha256 == hashlib.sha256(data).hexdigest() and len(d.chain) == 4
    assert chain_by_resuming(data, 2 * 1024 * 1024, d.chain)
