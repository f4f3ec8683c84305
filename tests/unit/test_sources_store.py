"""The verified, resumable blob store behind Hub fetches, driven by plain in-memory downloaders (no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import pytest

from airpack.errors import FetchError
from airpack.lock import LockedFile
from airpack.sources import default_cache_dir
from airpack.sources._store import BlobStore, HashingWriter, git_blob_id

pytestmark = pytest.mark.disable_socket

DATA = bytes(range(256)) * 4096  # 1 MiB


def _locked(data: bytes = DATA, path: str = "w.bin", blob: bool = False) -> LockedFile:
    return LockedFile(path, len(data), hashlib.sha256(data).hexdigest(), git_blob_id(data) if blob else None)


class Serve:
    """A downloader that appends the missing bytes, recording where each call started."""

    def __init__(self, data: bytes, stop_at: int | None = None) -> None:
        self.data, self.stop_at, self.calls = data, stop_at, list[int]()

    def __call__(self, fh: BinaryIO, have: int) -> None:
        self.calls.append(have)
        end = len(self.data) if self.stop_at is None else self.stop_at
        for pos in range(have, end, 100_000):  # noqa: FURB122 - write() alone, as http_get calls it
            fh.write(self.data[pos:min(end, pos + 100_000)])
        if self.stop_at is not None:
            raise FetchError("connection lost")


def test_git_blob_id_matches_git() -> None:
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_resume_continues_from_the_partial_file(tmp_path: Path) -> None:
    store, f = BlobStore(tmp_path / "cache"), _locked()
    with pytest.raises(FetchError, match="connection lost"):
        store.fetch(f, tmp_path / "out" / "w.bin", Serve(DATA, stop_at=300_000), None)
    assert store.partial(f.sha256).stat().st_size == 300_000
    assert not (tmp_path / "out" / "w.bin").exists()

    serve = Serve(DATA)
    digest = store.fetch(f, tmp_path / "out" / "w.bin", serve, None)
    assert serve.calls == [300_000]
    assert digest.sha256 == f.sha256 and (tmp_path / "out" / "w.bin").read_bytes() == DATA
    assert not store.partial(f.sha256).exists() and store.blob(f.sha256).exists()


def test_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store, f = BlobStore(tmp_path / "cache"), _locked()
    dest = tmp_path / "out" / "w.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    bad = bytearray(DATA)
    bad[-1] ^= 1
    with pytest.raises(FetchError, match=r"w\.bin: the downloaded bytes do not match the lock \(sha256"):
        store.fetch(f, dest, Serve(bytes(bad)), None)
    assert not dest.exists() and not store.partial(f.sha256).exists() and not store.blob(f.sha256).exists()


def test_more_bytes_than_locked_are_refused(tmp_path: Path) -> None:
    store, f = BlobStore(tmp_path / "cache"), _locked()
    with pytest.raises(FetchError, match="more than the 1048576 bytes locked"):
        store.fetch(f, tmp_path / "w.bin", Serve(DATA + b"extra"), None)
    assert not store.partial(f.sha256).exists()


def test_blob_id_is_checked(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "cache")
    f = LockedFile("c.json", 3, hashlib.sha256(b"{}\n").hexdigest(), "0" * 40)
    with pytest.raises(FetchError, match="git blob id"):
        store.fetch(f, tmp_path / "c.json", Serve(b"{}\n"), None)
    good = LockedFile("c.json", 3, f.sha256, git_blob_id(b"{}\n"))
    assert store.fetch(good, tmp_path / "c.json", Serve(b"{}\n"), None).size == 3


def test_cached_blob_is_reused_but_rehashed(tmp_path: Path) -> None:
    store, f = BlobStore(tmp_path / "cache"), _locked()
    store.fetch(f, tmp_path / "a" / "w.bin", Serve(DATA), None)
    never = Serve(b"")
    assert store.fetch(f, tmp_path / "b" / "w.bin", never, None).sha256 == f.sha256
    assert never.calls == []
    # a damaged cache entry is detected and downloaded again
    (tmp_path / "a" / "w.bin").unlink()  # the blob is hard-linked to the first destination
    store.blob(f.sha256).write_bytes(b"rot" + DATA[3:])
    serve = Serve(DATA)
    assert store.fetch(f, tmp_path / "c" / "w.bin", serve, None).sha256 == f.sha256
    assert serve.calls == [0]


def test_writer_rewind_restarts_the_hashes(tmp_path: Path) -> None:
    """What http_get does when a server ignores Range: seek back, truncate, write the whole file again."""
    f = _locked(blob=True)
    with (tmp_path / "p").open("w+b") as fh:
        fh.write(DATA[:5000])
        w = HashingWriter(fh, f, None)
        w.absorb(5000)
        w.write(b"garbage that will be discarded")
        w.seek(w.tell() - (5000 + 30))
        w.truncate()
        w.write(DATA)
        digest, blob = w.finish()
    assert (digest.sha256, blob) == (f.sha256, f.blob_id)
    assert (tmp_path / "p").read_bytes() == DATA


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRPACK_CACHE", str(tmp_path / "ac"))
    assert default_cache_dir() == tmp_path / "ac"
    monkeypatch.delenv("AIRPACK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "airpack"
