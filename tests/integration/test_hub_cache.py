"""The Hugging Face cache source, on a cache that huggingface_hub itself filled from the local Hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubserver import TINY_C1, HubServer
from huggingface_hub import snapshot_download

from airpack.errors import FetchError, SourceError
from airpack.hashing import hash_file
from airpack.sources import fetch_hf_cache, lock_from_hf_cache, resolve_hub
from airpack.sources.hf_cache import repo_folder
from airpack.spec import ModelSpec

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(["127.0.0.1"])]


@pytest.fixture
def hf_cache(hub: HubServer, tmp_path: Path) -> Path:
    cache = tmp_path / "hf"
    for repo in ("acme/tiny", "acme/smol"):
        snapshot_download(repo, revision="main", cache_dir=cache, endpoint=hub.url,
                          allow_patterns=["*.json", "*.jinja", "*.md", "*.safetensors", "*.bin", "*.py", "extra/*"])
    snapshot = repo_folder(cache, "acme/tiny") / "snapshots" / TINY_C1
    assert (snapshot / "model.safetensors").is_symlink()  # a real cache layout, written by huggingface_hub
    return cache


def test_cache_lock_equals_hub_lock_and_needs_no_network(hub: HubServer, hf_cache: Path, tmp_path: Path) -> None:
    spec = ModelSpec(repo="acme/tiny", revision="main")
    from_hub = resolve_hub(spec, endpoint=hub.url)
    hub.clear_log()

    locked = lock_from_hf_cache(spec, hf_cache)
    digests = fetch_hf_cache(locked, tmp_path / "out", cache=hf_cache)

    assert hub.logged() == []
    assert locked.source == "hf-cache" and locked.commit == from_hub.commit == TINY_C1
    assert locked.files == from_hub.files and locked.excluded == from_hub.excluded
    for f in locked.files:
        assert hash_file(tmp_path / "out" / f.path) == digests[f.path]
        assert digests[f.path].sha256 == f.sha256
        assert not (tmp_path / "out" / f.path).is_symlink()


def test_link_outside_the_repo_cache_is_refused(hf_cache: Path, tmp_path: Path) -> None:
    spec = ModelSpec(repo="acme/tiny")
    good = lock_from_hf_cache(spec, hf_cache)
    entry = repo_folder(hf_cache, "acme/tiny") / "snapshots" / TINY_C1 / "config.json"
    outside = tmp_path / "elsewhere" / "config.json"
    outside.parent.mkdir()
    outside.write_bytes(entry.read_bytes())  # same bytes: only where the link points is wrong
    entry.unlink()
    entry.symlink_to(outside)

    with pytest.raises(SourceError, match=r"config\.json links outside the Hugging Face cache of acme/tiny"):
        lock_from_hf_cache(spec, hf_cache)
    with pytest.raises(SourceError, match="links outside"):
        fetch_hf_cache(good, tmp_path / "out", cache=hf_cache)
    assert not (tmp_path / "out" / "config.json").exists()

    # another repo's folder is inside the cache but not this repo's: refused too
    other = next((repo_folder(hf_cache, "acme/smol") / "blobs").iterdir())
    entry.unlink()
    entry.symlink_to(other)
    with pytest.raises(SourceError, match="links outside"):
        lock_from_hf_cache(spec, hf_cache)


def test_damaged_cached_weights_are_refused_at_fetch(hf_cache: Path, tmp_path: Path) -> None:
    spec = ModelSpec(repo="acme/tiny", files=("*.safetensors",))
    locked = lock_from_hf_cache(spec, hf_cache)
    (f,) = locked.files
    blob = repo_folder(hf_cache, "acme/tiny") / "blobs" / f.sha256
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(FetchError, match=r"model\.safetensors: the cached bytes do not match the lock"):
        fetch_hf_cache(locked, tmp_path / "out", cache=hf_cache)
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_missing_repo_and_revision_in_cache(hf_cache: Path) -> None:
    with pytest.raises(SourceError, match=r"model\.cache: acme/other is not in the Hugging Face cache"):
        lock_from_hf_cache(ModelSpec(repo="acme/other"), hf_cache)
    with pytest.raises(SourceError, match=r"model\.revision: 'v9' is not in the Hugging Face cache"):
        lock_from_hf_cache(ModelSpec(repo="acme/tiny", revision="v9"), hf_cache)
    assert lock_from_hf_cache(ModelSpec(repo="acme/tiny", revision=TINY_C1), hf_cache).commit == TINY_C1
