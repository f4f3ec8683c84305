"""docker-archive generation from an OCI layout (what load_into_engine streams), no engine, no sockets."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import airpack.oci.archive
from airpack.errors import VerificationError
from airpack.lock import LockedImage
from airpack.oci.archive import ArchiveEntry, DockerArchive
from airpack.oci.engine import airpack_tag
from airpack.oci.engine_load import unloadable_layers
from airpack.oci.layout import OciLayout
from tests.layout_helpers import make_image, make_layer


@pytest.fixture
def layout(tmp_path: Path) -> tuple[OciLayout, list[LockedImage], bytes]:
    lay = OciLayout.create(tmp_path / "layout")
    shared, _ = make_layer("bin/x", b"shared" * 1000)
    own, _ = make_layer("data", b"own" * 5000)
    a = make_image(lay, "reg.example/a/one:1", [shared])
    b = make_image(lay, "reg.example/a/two:2", [shared, own])
    return lay, [a, b], shared


def test_archive_layout_and_dedup(layout: tuple[OciLayout, list[LockedImage], bytes]) -> None:
    lay, images, shared = layout
    entries = [ArchiveEntry(lay.find(i), (airpack_tag(i), i.ref)) for i in images]
    seen: list[int] = []
    archive = DockerArchive(lay, entries, progress=seen.append)
    data = b"".join(bytes(block) for block in archive)  # copied: a yielded block is reused after the next one
    assert len(archive) == len(data)  # sent as Content-Length: must be exact
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        shared_hex = hashlib.sha256(shared).hexdigest()
        assert tar.extractfile(f"{shared_hex}/layer.tar").read() == shared  # type: ignore[union-attr]
        for img, entry in zip(images, manifest, strict=True):
            config = tar.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(config).hexdigest() == img.config_digest
            assert entry["RepoTags"] == [airpack_tag(img), img.ref]
    assert names[0] == "manifest.json"
    assert names.count(f"{shared_hex}/layer.tar") == 1  # a shared layer is streamed once
    assert manifest[1]["Layers"][0] == manifest[0]["Layers"][0] == f"{shared_hex}/layer.tar"
    assert len(manifest[1]["Layers"]) == 2
    assert sum(seen) == sum(b.size for i in entries for b in i.image.manifest.blobs) - len(shared)
    assert airpack_tag(images[0]) == f"airpack.local/a/one:{images[0].digest[7:19]}"


def test_archive_detects_changed_bytes(layout: tuple[OciLayout, list[LockedImage], bytes]) -> None:
    lay, images, shared = layout
    entries = [ArchiveEntry(lay.find(images[0]), ("x:1",))]
    path = lay.blob_path("sha256:" + hashlib.sha256(shared).hexdigest())
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1  # same size, different bytes: as a medium that reads back differently
    path.write_bytes(bytes(raw))
    stream = iter(DockerArchive(lay, entries))
    with pytest.raises(VerificationError, match="do not match"):
        for _ in stream:
            pass


def test_archive_detects_truncation(layout: tuple[OciLayout, list[LockedImage], bytes]) -> None:
    lay, images, shared = layout
    entries = [ArchiveEntry(lay.find(images[0]), ("x:1",))]
    path = lay.blob_path("sha256:" + hashlib.sha256(shared).hexdigest())
    path.write_bytes(shared[:-10])
    with pytest.raises(VerificationError, match="early"):
        b"".join(bytes(block) for block in DockerArchive(lay, entries))


def test_find_checks_config(layout: tuple[OciLayout, list[LockedImage], bytes]) -> None:
    lay, images, _ = layout
    wrong = LockedImage(**{**images[0].__dict__, "config_digest": "sha256:" + "0" * 64})
    with pytest.raises(VerificationError, match="config"):
        lay.find(wrong)


def test_unloadable_layers() -> None:
    zstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    gz = "application/vnd.oci.image.layer.v1.tar+gzip"
    assert unloadable_layers([zstd, gz], "20.10.24+dfsg1") == [zstd]
    assert unloadable_layers([zstd, gz], "25.0.3") == []


def test_large_blobs_stream_through_reused_buffers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks alternate between two buffers: each is right when it is consumed, the whole equals the blob."""
    monkeypatch.setattr(airpack.oci.archive, "BLOCK", 4096)
    lay = OciLayout.create(tmp_path / "layout")
    layer, _ = make_layer("data", os.urandom(50_000))
    img = make_image(lay, "reg.example/a/big:1", [layer])
    archive = DockerArchive(lay, [ArchiveEntry(lay.find(img), ("x:1",))])
    blocks = [bytes(b) for b in archive]
    assert sum(map(len, blocks)) == len(archive)
    data = b"".join(blocks)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = tar.extractfile(f"{hashlib.sha256(layer).hexdigest()}/layer.tar").read()  # type: ignore[union-attr]
    assert got == layer
    assert len([b for b in blocks if len(b) == 4096]) >= 12  # it really went through 4 KiB blocks
