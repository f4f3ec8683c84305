"""Fetching a locked Hub model: real 98 MB GGUF, verification against the lock, resume, the cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hubserver import GGUF_NAME, SMOL_C1, HubServer

from airpack.errors import FetchError
from airpack.hashing import CHUNK_SIZE, hash_file
from airpack.lock import LockedModel
from airpack.sources import fetch_hub, resolve_hub
from airpack.spec import ModelSpec

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(["127.0.0.1"])]


def _lock(hub: HubServer, repo: str = "acme/smol", **kw: object) -> LockedModel:
    return resolve_hub(ModelSpec(repo=repo, **kw), endpoint=hub.url)  # type: ignore[arg-type]


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".part"))]


def _cdn_gets(hub: HubServer, sha256: str) -> list:  # type: ignore[type-arg]
    return [r for r in hub.logged(server="cdn", method="GET") if sha256 in r.path]


def test_fetch_real_gguf_verified_with_chunk_digests(hub: HubServer, tmp_path: Path,
                                                     smollm2_gguf: tuple[Path, str]) -> None:
    gguf, sha = smollm2_gguf
    locked = _lock(hub)
    assert locked.commit == SMOL_C1
    seen: list[int] = []
    digests = fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache",
                        progress=seen.append)

    d = digests[GGUF_NAME]
    assert (d.size, d.sha256) == (gguf.stat().st_size, sha)
    assert len(d.chain) + 1 == -(-d.size // CHUNK_SIZE) == 2  # chain values come back: no second read needed
    assert hash_file(tmp_path / "out" / GGUF_NAME) == d
    assert sum(seen) == locked.total_size
    assert set(digests) == {f.path for f in locked.files}
    assert _no_temp_files(tmp_path / "out") and _no_temp_files(tmp_path / "cache")

    # a second build reuses the cache: no byte of the GGUF is downloaded again
    hub.clear_log()
    again = fetch_hub(locked, tmp_path / "out2", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert again == digests
    assert _cdn_gets(hub, sha) == []


def test_lying_lfs_sha256_is_refused_and_nothing_is_left(hub: HubServer, tmp_path: Path) -> None:
    hub.lie_sha256("acme/tiny", "model.safetensors")
    locked = _lock(hub, "acme/tiny")
    out = tmp_path / "out"
    (out).mkdir()
    (out / "model.safetensors").write_bytes(b"stale from an earlier run")
    with pytest.raises(FetchError, match=r"^model\.safetensors: the downloaded bytes do not match the lock"):
        fetch_hub(locked, out, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert not (out / "model.safetensors").exists()
    assert (out / "config.json").is_file()  # the other files were still fetched and verified
    assert _no_temp_files(out) and _no_temp_files(tmp_path / "cache")
    sha = next(f.sha256 for f in locked.files if f.path == "model.safetensors")
    assert not [p for p in (tmp_path / "cache").rglob(f"*{sha}*") if p.parent.name in ("blobs", "partial")]


def test_blob_id_is_checked_at_fetch(hub: HubServer, tmp_path: Path) -> None:
    locked = _lock(hub, "acme/tiny", files=("config.json",))
    (f,) = locked.files
    assert f.blob_id
    forged = dataclasses.replace(locked, files=(dataclasses.replace(f, blob_id="0" * 40),))
    with pytest.raises(FetchError, match=r"config\.json: .*git blob id"):
        fetch_hub(forged, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out" / "config.json").exists()


def test_cut_download_resumes_on_the_next_run(hub: HubServer, tmp_path: Path,
                                              smollm2_gguf: tuple[Path, str]) -> None:
    _, sha = smollm2_gguf
    locked = _lock(hub, files=("*.gguf",))
    size = locked.files[0].size
    hub.cut(sha, after=45_000_000, then_fail=1)  # the connection drops mid-body, then the server is unavailable
    with pytest.raises(FetchError, match=GGUF_NAME):
        fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out" / GGUF_NAME).exists()
    (part,) = (tmp_path / "cache").rglob("*.part")
    kept = part.stat().st_size  # what huggingface_hub had written (it writes in 10 MiB reads)
    assert 0 < kept <= 45_000_000

    hub.clear_log()
    digests = fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert digests[GGUF_NAME].sha256 == sha
    (get,) = _cdn_gets(hub, sha)
    assert get.range == f"bytes={kept}-" and get.status == 206
    assert get.body_bytes == size - kept < size
    assert not part.exists()


def test_cut_within_a_run_resumes_with_range(hub: HubServer, tmp_path: Path,
                                             smollm2_gguf: tuple[Path, str]) -> None:
    _, sha = smollm2_gguf
    locked = _lock(hub, files=("*.gguf",))
    size = locked.files[0].size
    hub.cut(sha, after=25_000_000)
    digests = fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert digests[GGUF_NAME].sha256 == sha and digests[GGUF_NAME].size == size
    first, second = _cdn_gets(hub, sha)
    assert (first.range, first.body_bytes) == (None, 25_000_000)
    assert second.range is not None and second.status == 206
    offset = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= 25_000_000 and second.body_bytes == size - offset


def test_server_ignoring_range_still_verifies(hub: HubServer, tmp_path: Path,
                                              smollm2_gguf: tuple[Path, str]) -> None:
    """A server that answers 200 to a Range request: the partial is rewound and its hash restarted."""
    _, sha = smollm2_gguf
    locked = _lock(hub, files=("*.gguf",))
    size = locked.files[0].size
    hub.cut(sha, after=25_000_000, then_fail=1)
    with pytest.raises(FetchError):
        fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    hub.state.ignore_range = True
    hub.clear_log()
    digests = fetch_hub(locked, tmp_path / "out", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert (digests[GGUF_NAME].sha256, digests[GGUF_NAME].size) == (sha, size)
    (get,) = _cdn_gets(hub, sha)
    assert get.range is not None and (get.status, get.body_bytes) == (200, size)
