"""The Hugging Face cache source on a hand-built cache layout (huggingface_hub's own layout is covered in
tests/integration/test_hub_cache.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from airpack.errors import FetchError, SourceError
from airpack.sources import fetch_hf_cache, lock_from_hf_cache
from airpack.sources._store import git_blob_id
from airpack.spec import ModelSpec

pytestmark = pytest.mark.disable_socket

COMMIT = "a" * 40
WEIGHTS = b"\x00weights" * 1000
CONFIG = b'{"model_type": "llama"}\n'


def _cache(tmp_path: Path, *, shared_weights: bool = False) -> Path:
    """models--acme--m with refs/main, a snapshot of relative links into blobs/, like huggingface_hub writes."""
    cache = tmp_path / "hub"
    repo = cache / "models--acme--m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    snap = repo / "snapshots" / COMMIT
    (snap / "sub").mkdir(parents=True)
    wsha, cid = hashlib.sha256(WEIGHTS).hexdigest(), git_blob_id(CONFIG)
    if shared_weights:  # huggingface_hub >= 1.30 with Xet: the repo blob links into <cache>/blobs/<xx>/<hash>
        store = cache / "blobs" / "ab"
        store.mkdir(parents=True)
        (cache / "blobs" / ".huggingface-shared-blobs").write_text("1\n")
        (store / ("ab" + "0" * 62)).write_bytes(WEIGHTS)
        (repo / "blobs" / wsha).symlink_to(Path("../../blobs/ab") / ("ab" + "0" * 62))
    else:
        (repo / "blobs" / wsha).write_bytes(WEIGHTS)
    (repo / "blobs" / cid).write_bytes(CONFIG)
    (snap / "model.safetensors").symlink_to(Path("../../blobs") / wsha)
    (snap / "sub" / "config.json").symlink_to(Path("../../../blobs") / cid)
    (snap / "pytorch_model.bin").symlink_to(Path("../../blobs") / cid)
    return cache


def test_lock_takes_lfs_sha256_from_the_blob_name_and_checks_small_files(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    locked = lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)
    files = {f.path: f for f in locked.files}
    assert locked.commit == COMMIT and locked.source == "hf-cache"
    assert set(files) == {"model.safetensors", "sub/config.json"}
    assert files["model.safetensors"].sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert files["model.safetensors"].blob_id is None
    assert files["sub/config.json"].blob_id == git_blob_id(CONFIG)
    assert [e.path for e in locked.excluded] == ["pytorch_model.bin"]

    digests = fetch_hf_cache(locked, tmp_path / "out", cache=cache)
    assert (tmp_path / "out" / "sub" / "config.json").read_bytes() == CONFIG
    assert digests["model.safetensors"].sha256 == files["model.safetensors"].sha256


def test_shared_xet_blob_store_is_followed(tmp_path: Path) -> None:
    cache = _cache(tmp_path, shared_weights=True)
    locked = lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)
    assert fetch_hf_cache(locked, tmp_path / "out", cache=cache)["model.safetensors"].size == len(WEIGHTS)


def test_link_outside_is_refused(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_bytes(CONFIG)
    link = cache / "models--acme--m" / "snapshots" / COMMIT / "sub" / "config.json"
    link.unlink()
    link.symlink_to(secret)
    with pytest.raises(SourceError, match="links outside the Hugging Face cache of acme/m"):
        lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)


def test_shared_store_without_its_marker_is_outside(tmp_path: Path) -> None:
    cache = _cache(tmp_path, shared_weights=True)
    (cache / "blobs" / ".huggingface-shared-blobs").unlink()
    with pytest.raises(SourceError, match="links outside"):
        lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)


def test_damaged_small_file_is_refused_at_lock(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    (cache / "models--acme--m" / "blobs" / git_blob_id(CONFIG)).write_bytes(b"{}\n")
    with pytest.raises(SourceError, match="does not match its git blob id"):
        lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)


def test_changed_weights_are_refused_at_fetch(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    locked = lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)
    (cache / "models--acme--m" / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).write_bytes(WEIGHTS[::-1])
    with pytest.raises(FetchError, match=r"model\.safetensors: the cached bytes do not match"):
        fetch_hf_cache(locked, tmp_path / "out", cache=cache)
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("revision", "message"),
    [("v2", r"'v2' is not in the Hugging Face cache"), ("../../etc", r"is not in the Hugging Face cache"),
     ("b" * 40, r"is not in the Hugging Face cache")],
)
def test_unknown_revision(tmp_path: Path, revision: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        lock_from_hf_cache(ModelSpec(repo="acme/m", revision=revision), _cache(tmp_path))


def test_dangling_link_and_ref_without_snapshot(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    (cache / "models--acme--m" / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).unlink()
    with pytest.raises(SourceError, match="dangling link"):
        lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)
    (cache / "models--acme--m" / "refs" / "main").write_text("c" * 40)
    with pytest.raises(SourceError, match="points to a commit with no snapshot"):
        lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)


def test_fetch_model_dispatches_and_reports(tmp_path: Path) -> None:
    from airpack.errors import LockError
    from airpack.sources import fetch_model

    class Recorder:
        def __init__(self) -> None:
            self.total, self.seen, self.finished = 0, 0, False

        def task(self, description: str, total: int) -> Callable[[int], None]:
            self.total = total
            return self.advance

        def advance(self, n: int) -> None:
            self.seen += n

        def done(self, advance: Callable[[int], None]) -> None:
            self.finished = True

    cache = _cache(tmp_path)
    locked = lock_from_hf_cache(ModelSpec(repo="acme/m"), cache)
    with pytest.raises(LockError, match=r"model\.cache is not set"):
        fetch_model(locked, tmp_path / "out", cache_dir=tmp_path / "ac")
    rec = Recorder()
    digests = fetch_model(locked, tmp_path / "out", cache_dir=tmp_path / "ac", cache=cache, reporter=rec)
    assert set(digests) == {"model.safetensors", "sub/config.json"}
    assert rec.total == rec.seen == locked.total_size and rec.finished
