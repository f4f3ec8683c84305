"""Where fetched blobs land and what their digests are: the layout on the cache's file system (hard links)
or on another one (each byte written to both files in the one pass), chunk digests recorded while the blob
was written, a resumed download, and a damaged blob left in a staging layout. Real registry on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airpack.bundle_images import fetch_all
from airpack.errors import FetchError
from airpack.hashing import CHUNK_SIZE, hash_file
from airpack.lock import LockedImage
from airpack.oci import resolve_image
from airpack.oci.fetch import fetch_image
from airpack.oci.manifest import OCI_CONFIG, OCI_MANIFEST
from airpack.progress import Silent
from tests.dockerenv import FaultProxy, Registry, push_blob, push_manifest, sha256, start_registry

pytestmark = pytest.mark.integration

OCI_RAW_LAYER = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = start_registry(tmp_path_factory.mktemp("oci-fetch"), "upstream")
    yield r
    r.stop()


@pytest.fixture
def other_fs() -> Iterator[Path]:
    """A folder on a file system other than pytest's tmp_path (tmpfs), as a bundle on removable media is."""
    root = Path(tempfile.mkdtemp(prefix="airpack-test-", dir="/dev/shm"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _push_big(reg: Registry, repo: str, size: int) -> tuple[str, bytes]:
    """An image whose single (uncompressed) layer is ``size`` random bytes: over one chunk when size > 64 MiB."""
    layer = os.urandom(size)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_RAW_LAYER, "digest": sha256(layer), "size": len(layer)}]}).encode()
    push_blob(reg.url, repo, layer)
    push_blob(reg.url, repo, config)
    push_manifest(reg.url, repo, "1", manifest, OCI_MANIFEST)
    return sha256(layer), layer


def _no_temporaries(layout: Path) -> None:
    assert not [p.name for p in (layout / "blobs/sha256").iterdir() if p.name.startswith(".")]


def _no_copy_afterwards(path: object, *_: object) -> None:
    raise AssertionError(f"{path} was copied after the download instead of written in the same pass")


def test_layout_on_another_file_system_is_written_in_the_same_pass(
        reg: Registry, tmp_path: Path, other_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airpack.oci.layout.shutil.copyfile", _no_copy_afterwards)
    digest, layer = _push_big(reg, "t/big", CHUNK_SIZE + 1_000_000)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert cache.stat().st_dev != other_fs.stat().st_dev
    locked = resolve_image(f"{reg.host}/t/big:1", "linux/amd64")
    layout = other_fs / "layout"
    got = fetch_image(locked, layout, cache_dir=cache)
    blob = layout / "blobs/sha256" / digest[7:]
    cached = cache / "blobs/sha256" / digest[7:]
    assert blob.read_bytes() == layer == cached.read_bytes()
    assert blob.stat().st_nlink == 1  # a copy of its own, not a link into the cache
    # The digests recorded while writing equal a fresh read, chain included (two chunks for 65 MiB: one value).
    assert got.digests[digest] == hash_file(blob)
    assert len(got.digests[digest].chain) == 1
    _no_temporaries(layout)

    # From the cache, into a second bundle elsewhere: nothing downloaded, copied while hashed.
    again = fetch_image(locked, other_fs / "layout2", cache_dir=cache)
    assert again.downloaded == 0
    assert again.digests[digest] == got.digests[digest]
    assert (other_fs / "layout2/blobs/sha256" / digest[7:]).read_bytes() == layer
    _no_temporaries(other_fs / "layout2")


def test_layout_on_the_cache_file_system_is_hard_linked(reg: Registry, tmp_path: Path) -> None:
    digest, layer = _push_big(reg, "t/small", 300_000)
    locked = resolve_image(f"{reg.host}/t/small:1", "linux/amd64")
    got = fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache")
    blob = tmp_path / "layout/blobs/sha256" / digest[7:]
    assert blob.stat().st_nlink == 2 and blob.read_bytes() == layer
    assert got.digests[digest] == hash_file(blob) and not got.digests[digest].chain


def test_resumed_download_to_another_file_system(reg: Registry, tmp_path: Path, other_fs: Path) -> None:
    digest, layer = _push_big(reg, "t/resume-x", 3 * 1024 * 1024)
    proxy = FaultProxy(reg.url)
    try:
        locked = resolve_image(f"{proxy.host}/t/resume-x:1", "linux/amd64")
        proxy.cut_after(1024 * 1024, f"/blobs/{digest}")
        layout = other_fs / "layout"
        with pytest.raises(FetchError, match="interrupted"):
            fetch_image(locked, layout, cache_dir=tmp_path / "cache", retries=1, workers=1)
        assert not (layout / "blobs/sha256" / digest[7:]).exists()
        _no_temporaries(layout)  # the half-written second copy went with the failure
        proxy.up()
        got = fetch_image(locked, layout, cache_dir=tmp_path / "cache")
        assert 0 < got.downloaded < len(layer)  # resumed, not restarted
        assert (layout / "blobs/sha256" / digest[7:]).read_bytes() == layer
        assert got.digests[digest] == hash_file(layout / "blobs/sha256" / digest[7:])
        _no_temporaries(layout)
    finally:
        proxy.close()


def _bundle_digests(images: tuple[LockedImage, ...], bundle: Path, cache: Path) -> dict[str, object]:
    digests, _ = fetch_all(images, bundle, cache_dir=cache, reporter=Silent())
    return dict(digests)


def test_fetch_all_digests_match_the_files_and_refuse_a_damaged_staging_blob(
        reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest, layer = _push_big(reg, "t/all", CHUNK_SIZE + 4096)
    locked = resolve_image(f"{reg.host}/t/all:1", "linux/amd64")
    bundle = tmp_path / "bundle"
    read_again: list[str] = []

    def recording_hash_file(path: Path, **kw: object) -> object:
        read_again.append(path.name)
        return hash_file(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("airpack.bundle_images.hash_file", recording_hash_file)
    digests = _bundle_digests((locked,), bundle, tmp_path / "cache")
    assert digest[7:] not in read_again  # the layer's digests came from the download, not a second read
    assert "index.json" in read_again
    files = sorted(p for p in (bundle / "images").rglob("*") if p.is_file())
    assert {p.relative_to(bundle).as_posix(): hash_file(p) for p in files} == digests
    assert f"images/blobs/sha256/{digest[7:]}" in digests

    # A killed run's temporary file is removed, never bundled; a blob whose bytes are not its name is refused.
    staging = tmp_path / "staging"
    blobs = staging / "images/blobs/sha256"
    blobs.mkdir(parents=True)
    (blobs / ".0123456789ab.99.tee").write_bytes(b"half")
    damaged = bytearray(layer)
    damaged[-1] ^= 1
    (blobs / digest[7:]).write_bytes(bytes(damaged))
    with pytest.raises(FetchError, match="not its name"):
        _bundle_digests((locked,), staging, tmp_path / "cache")
    assert not (blobs / ".0123456789ab.99.tee").exists()
