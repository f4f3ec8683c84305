# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""Engine round trips with a real dockerd: fetch from a registry, then load with the registry gone."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airpack.errors import VerificationError
from airpack.lock import LockedImage
from airpack.oci import resolve_image
from airpack.oci.engine import airpack_tag
from airpack.oci.engine_load import layer_media_types, load_into_engine
from airpack.oci.engine_save import resolve_engine_image
from airpack.oci.fetch import fetch_image
from airpack.oci.layout import OciLayout, ref_name
from tests.dockerenv import (  # noqa: F401 - fixtures are used by name
    BuiltImage,
    DockerEngine,
    Registry,
    built_images,
    docker_engine,
    llama_server_image,
    push_to,
    start_registry,
    upstream_registry,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def _remove(client: Any, *refs: str) -> None:
    for ref in refs:
        try:
            client.api.remove_image(ref, force=True)
        except Exception:  # noqa: S110, BLE001 - already gone
            pass


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path, "upstream-private")
    yield reg
    reg.stop()


def test_fetch_then_load_with_registry_stopped(docker_engine: DockerEngine, built_images: dict[str, BuiltImage],
                                               private_registry: Registry, tmp_path: Path) -> None:
    client = docker_engine.client
    refs = [push_to(docker_engine, built_images[n].local, private_registry) for n in ("busybox", "busybox-data")]
    locks = [resolve_image(r, "linux/amd64") for r in refs]
    for lk, name in zip(locks, ("busybox", "busybox-data"), strict=True):
        assert lk.config_digest == built_images[name].image_id  # config digest == the engine's image ID
    layout = tmp_path / "layout"
    for lk in locks:
        fetch_image(lk, layout, cache_dir=tmp_path / "cache")
    assert layer_media_types(layout, locks)[locks[0].ref] == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    # Far side: no image in the engine, no registry to fetch from.
    private_registry.stop()
    _remove(client, *refs, *(airpack_tag(lk) for lk in locks))
    for lk in reversed(locks):  # children first: a parent image cannot be removed before them
        _remove(client, lk.config_digest)
    assert not client.api.images(filters={"reference": "airpack-test/*"})
    try:
        tags = load_into_engine(layout, locks, client)
    finally:  # give the other tests their local tags back
        for name in ("busybox", "busybox-data"):
            repo, _, tag = built_images[name].local.rpartition(":")
            client.api.tag(f"{private_registry.host}/{built_images[name].local}", repo, tag)
    assert tags == [airpack_tag(lk) for lk in locks]
    for lk, tag, ref in zip(locks, tags, refs, strict=True):
        assert client.api.inspect_image(tag)["Id"] == lk.config_digest
        assert client.api.inspect_image(ref)["Id"] == lk.config_digest  # the original reference too
    out = client.containers.run(tags[1], ["sh", "-c", "cat /data/README && wget --help 2>&1 | head -1"],
                                network_mode="host", remove=True)
    assert b"airpack test data" in out


def test_engine_only_image_round_trip(docker_engine: DockerEngine, built_images: dict[str, BuiltImage],
                                      tmp_path: Path) -> None:
    client = docker_engine.client
    client.api.tag(built_images["busybox-data"].local, "airpack-test/custom", "local")
    locked = resolve_engine_image(client, "airpack-test/custom:local", "linux/amd64")
    assert locked.source == "engine" and locked.config_digest == built_images["busybox-data"].image_id
    layout = tmp_path / "layout"
    fetched = fetch_image(locked, layout, cache_dir=tmp_path / "cache", engine=client)
    out = subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:{ref_name(locked)}"],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["rootfs"]["diff_ids"] == [b.digest for b in fetched.blobs[1:]]
    _remove(client, "airpack-test/custom:local", airpack_tag(locked))
    assert load_into_engine(layout, [locked], client) == [airpack_tag(locked)]
    assert client.api.inspect_image("airpack-test/custom:local")["Id"] == locked.config_digest


def _own_image(client: Any, base: str, label: str) -> str:
    """An image of this test's own (``base`` plus a label: a new config, so a new ID; the layers are shared)."""
    image, _ = client.images.build(fileobj=io.BytesIO(f"FROM {base}\nLABEL airpack.test={label}\n".encode()),
                                   tag=f"airpack-test/{label}:1", rm=True, pull=False)
    return str(image.id)


def _flip_a_layer_byte(layout: Path, locked: LockedImage) -> None:
    layer = OciLayout(layout).find(locked).manifest.layers[-1]
    path = OciLayout(layout).blob_path(layer.digest)
    raw = bytearray(path.read_bytes())
    raw[-2000] ^= 1
    path.chmod(0o644)
    path.unlink()  # break the hard link with the cache: a different medium
    path.write_bytes(bytes(raw))


def test_load_refuses_bytes_changed_after_verification(docker_engine: DockerEngine,
                                                      built_images: dict[str, BuiltImage],
                                                      tmp_path: Path) -> None:
    client = docker_engine.client
    image_id = _own_image(client, built_images["busybox"].local, "tamper")
    locked = resolve_engine_image(client, "airpack-test/tamper:1", "linux/amd64")
    layout = tmp_path / "layout"
    fetch_image(locked, layout, cache_dir=tmp_path / "cache", engine=client)
    _flip_a_layer_byte(layout, locked)
    _remove(client, "airpack-test/tamper:1", airpack_tag(locked), image_id)  # not in the engine: it must load
    with pytest.raises(VerificationError, match="do not match"):
        load_into_engine(layout, [locked], client)
    for ref in (airpack_tag(locked), image_id):
        with pytest.raises(Exception, match="No such image"):
            client.api.inspect_image(ref)


def test_load_only_tags_an_image_the_engine_already_holds(docker_engine: DockerEngine,
                                                         built_images: dict[str, BuiltImage],
                                                         tmp_path: Path) -> None:
    """An upgrade that changes only the weights: the runtime image (same ID) is not streamed again. The proof:
    a layer's bytes in the layout are damaged and the load still succeeds, because it reads none of them."""
    client = docker_engine.client
    image_id = _own_image(client, built_images["busybox"].local, "present")
    locked = resolve_engine_image(client, "airpack-test/present:1", "linux/amd64")
    layout = tmp_path / "layout"
    fetch_image(locked, layout, cache_dir=tmp_path / "cache", engine=client)
    _flip_a_layer_byte(layout, locked)
    client.api.tag(image_id, "airpack-test/holder", "1")  # keeps the image in the engine while untagged below
    _remove(client, airpack_tag(locked))
    client.api.remove_image("airpack-test/present:1")
    try:
        assert load_into_engine(layout, [locked], client) == [airpack_tag(locked)]
        for ref in (airpack_tag(locked), "airpack-test/present:1"):
            assert client.api.inspect_image(ref)["Id"] == image_id == locked.config_digest
    finally:
        _remove(client, airpack_tag(locked), "airpack-test/present:1", "airpack-test/holder:1", image_id)


def test_llama_server_image(docker_engine: DockerEngine, llama_server_image: BuiltImage,
                            tmp_path: Path) -> None:
    client = docker_engine.client
    attrs = client.api.inspect_image(llama_server_image.local)
    assert attrs["Config"]["Entrypoint"] == ["/app/llama-server"]
    assert "8080/tcp" in attrs["Config"]["ExposedPorts"]
    out = client.containers.run(llama_server_image.local, ["--version"], network_mode="host", remove=True,
                                stderr=True)
    assert b"version" in out.lower()
    sh = client.containers.run(llama_server_image.local, ["-c", "test -d /tmp && wget --help 2>&1 | head -1"],
                               entrypoint="/bin/sh", network_mode="host", remove=True, stderr=True)
    assert b"BusyBox" in sh
