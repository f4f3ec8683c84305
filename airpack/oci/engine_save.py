"""Build time: lock and save images that exist only in the local docker engine (a custom build that was never
pushed), converting ``docker save``'s docker-archive stream into the bundle's OCI layout.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airpack.errors import FetchError, SourceError
from airpack.hashing import DigestSink, FileDigest
from airpack.lock import LockedImage
from airpack.oci.engine import BLOCK, Progress, docker_errors, stream_errors
from airpack.oci.layout import FetchedImage, OciLayout, ref_name
from airpack.oci.manifest import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Descriptor, sha256_digest
from airpack.oci.reference import parse_platform, parse_reference

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def resolve_engine_image(client: Any, ref: str, platform: str = "linux/amd64", *,
                         role: str = "runtime") -> LockedImage:
    """Lock an image that exists only in the local engine (a custom build): pins its config digest (image ID).

    The engine keeps no manifest for such an image, so ``digest`` is left empty; the layout written by
    ``fetch_image`` holds an OCI manifest made from the saved layers.
    """
    parsed = parse_reference(ref)
    plat = parse_platform(platform)
    try:
        attrs = client.api.inspect_image(ref)
    except docker_errors() as exc:
        raise SourceError(f"{ref}: not found in the local docker engine ({type(exc).__name__})") from None
    os_, arch, variant = attrs.get("Os"), attrs.get("Architecture"), attrs.get("Variant")
    if not plat.matches(os_, arch, variant):
        raise SourceError(f"{ref}: the engine's image is {os_}/{arch}, the target is {plat}")
    return LockedImage(ref=str(parsed), repository=parsed.name, digest="", config_digest=str(attrs["Id"]),
                       platform=str(plat), role=role, source="engine", tag=parsed.tag,
                       size=int(attrs.get("Size") or 0), media_type=OCI_MANIFEST,
                       extra={"layerMediaTypes": [OCI_LAYER]})


class _GenReader(io.RawIOBase):
    """A file-like view of an iterator of byte chunks, for ``tarfile``'s streaming mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def save_from_engine(client: Any, locked: LockedImage, layout_dir: Path, *,
                     progress: Progress | None = None) -> FetchedImage:
    """``docker save`` the locked image ID, converting the docker-archive stream into the OCI layout."""
    layout = OciLayout.create(layout_dir)
    try:
        chunks = client.api.get_image(locked.config_digest, chunk_size=BLOCK)
    except docker_errors() as exc:
        raise SourceError(f"{locked.ref}: image {locked.config_digest} is no longer in the engine",
                          hint="the image was rebuilt or removed since lock; run 'airpack lock' again") from exc
    layers: dict[str, FileDigest] = {}  # "<dir>/layer.tar" -> its digests
    links: dict[str, str] = {}
    config: bytes | None = None
    doc: Any = None
    save_errors: tuple[type[Exception], ...] = (tarfile.TarError, ValueError, *stream_errors())
    try:
        with tarfile.open(fileobj=io.BufferedReader(_GenReader(iter(chunks)), BLOCK), mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name.endswith("/layer.tar") and member.issym():
                    links[name] = str(Path(name).parent / member.linkname)
                elif name.endswith("/layer.tar") and member.isfile():
                    layers[name] = _store(layout, tar.extractfile(member), progress)
                elif name == "manifest.json" or (name.endswith(".json") and _HEX64.match(name[:-5])):
                    fh = tar.extractfile(member)
                    data = fh.read() if fh else b""
                    if name == "manifest.json":
                        doc = json.loads(data)
                    elif name[:-5] == locked.config_digest[7:]:
                        config = data
    except save_errors as exc:
        raise FetchError(f"{locked.ref}: docker save stream failed ({type(exc).__name__}: {exc})") from None
    if config is None or sha256_digest(config) != locked.config_digest or not doc:
        raise FetchError(f"{locked.ref}: docker save did not return config {locked.config_digest}")
    paths = [links.get(p, p) for p in doc[0]["Layers"]]
    descs = [Descriptor(OCI_LAYER, "sha256:" + layers[p].sha256, layers[p].size) for p in paths]
    diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids", [])
    if [d.digest for d in descs] != diff_ids:
        raise FetchError(f"{locked.ref}: saved layers do not match the config's diff_ids")
    cfg = layout.put_bytes(config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": Descriptor(OCI_CONFIG, cfg.digest, cfg.size).to_dict(),
                "layers": [d.to_dict() for d in descs]}
    raw = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    mdesc = layout.put_bytes(raw)
    name = ref_name(locked)
    layout.add_manifest(Descriptor(OCI_MANIFEST, mdesc.digest, mdesc.size), name, cfg.digest)
    return FetchedImage(locked, mdesc.digest, name, (cfg, *descs), 0,
                        {"sha256:" + d.sha256: d for d in layers.values()})


def _store(layout: OciLayout, fh: Any, progress: Progress | None) -> FileDigest:
    """Write one layer into the layout under its digest, hashed (digest and chunk chain) as it is written."""
    sink = DigestSink()
    with layout.staging("sha256:" + "0" * 64) as (out, tmp):
        try:
            while block := fh.read(BLOCK):
                out.write(block)
                sink.update(block)
                if progress:
                    progress(len(block))
        finally:
            got = sink.close()
        out.close()
        digest = "sha256:" + got.sha256
        if not layout.has_blob(digest, got.size):
            layout.commit(tmp, digest)
    return got
