"""The docker engine side: lock/save images that exist only in a local engine, and load layouts into one.

Uses the docker SDK (``docker.DockerClient``); typed loosely because the SDK ships no type hints.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from airpack._fs import IO_BLOCK
from airpack.errors import FetchError, InstallError, SourceError, VerificationError
from airpack.hashing import DigestSink, FileDigest
from airpack.lock import LockedImage
from airpack.oci.archive import ArchiveEntry, DockerArchive
from airpack.oci.fetch import FetchedImage
from airpack.oci.layout import OciLayout, ref_name
from airpack.oci.manifest import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    config_platform,
    sha256_digest,
)
from airpack.oci.reference import parse_platform, parse_reference

Progress = Callable[[int], None]
AIRPACK_REGISTRY = "airpack.local"
BLOCK = IO_BLOCK
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _docker_errors() -> tuple[type[Exception], ...]:
    import docker.errors  # noqa: PLC0415

    return (docker.errors.DockerException,)


def _load_errors() -> tuple[type[Exception], ...]:
    """What a failed streaming upload to the engine can raise (our generator's error may come back wrapped)."""
    import requests  # noqa: PLC0415
    import urllib3.exceptions  # noqa: PLC0415

    return (*_docker_errors(), requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def airpack_tag(locked: LockedImage) -> str:
    """The airpack-owned tag for a loaded image: ``airpack.local/<repo>:<12 hex of the locked digest>``."""
    repo = parse_reference(locked.ref).repository
    return f"{AIRPACK_REGISTRY}/{repo}:{(locked.digest or locked.config_digest)[7:19]}"


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
    except _docker_errors() as exc:
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
    except _docker_errors() as exc:
        raise SourceError(f"{locked.ref}: image {locked.config_digest} is no longer in the engine",
                          hint="the image was rebuilt or removed since lock; run 'airpack lock' again") from exc
    layers: dict[str, FileDigest] = {}  # "<dir>/layer.tar" -> its digests
    links: dict[str, str] = {}
    config: bytes | None = None
    doc: Any = None
    stream_errors: tuple[type[Exception], ...] = (tarfile.TarError, ValueError, *_load_errors())
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
    except stream_errors as exc:
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


def load_into_engine(layout_dir: Path, images: list[LockedImage], client: Any, *,
                     progress: Progress | None = None) -> list[str]:
    """Load ``images`` from a verified layout into the engine; returns their airpack-owned tags.

    Each image is also tagged with its original reference. The loaded image ID must equal the locked config
    digest, or ``VerificationError``. An image the engine already holds under that ID (an upgrade that changes
    only the weights) is tagged, not sent again: the ID is the config's digest, which names every layer's
    content digest, so the engine's copy is the signed image (``docker load`` itself skips known layers).
    """
    layout = OciLayout(layout_dir)
    entries, all_tags = [], []
    for locked in images:
        tags = [airpack_tag(locked)]
        if locked.tag:
            tags.append(parse_reference(locked.ref).familiar())
        all_tags.append(tags)
        if _has_image(client, locked.config_digest):
            for tag in tags:
                repo, _, name = tag.rpartition(":")
                client.api.tag(locked.config_digest, repo, name)
            if progress:
                progress(locked.size)
            continue
        entries.append(ArchiveEntry(layout.find(locked), tuple(tags)))
    if entries:
        _load(layout, entries, client, progress)
    for locked, tags in zip(images, all_tags, strict=True):
        for tag in tags:
            try:
                got = client.api.inspect_image(tag)["Id"]
            except _docker_errors() as exc:
                raise InstallError(f"{tag}: not present after docker load ({type(exc).__name__})") from None
            if got != locked.config_digest:
                raise VerificationError(f"{tag}: loaded image ID {got} is not the signed {locked.config_digest}")
    return [tags[0] for tags in all_tags]


def _has_image(client: Any, image_id: str) -> bool:
    try:
        return bool(client.api.inspect_image(image_id)["Id"] == image_id)
    except _docker_errors():
        return False


def _load(layout: OciLayout, entries: list[ArchiveEntry], client: Any, progress: Progress | None) -> None:
    """Stream a docker-archive of ``entries`` to the engine's ``/images/load``."""
    failure: list[BaseException] = []

    archive = DockerArchive(layout, entries, progress=progress)

    class Body:
        """The archive with its length (so it is not sent chunked), remembering our own verification error."""

        def __len__(self) -> int:
            return len(archive)

        def __iter__(self) -> Iterator[bytes | memoryview]:
            try:
                yield from archive
            except VerificationError as exc:
                failure.append(exc)
                raise

    load_errors: tuple[type[Exception], ...] = (VerificationError, *_load_errors())
    try:
        for msg in client.api.load_image(Body(), quiet=True) or ():
            if isinstance(msg, dict) and msg.get("error"):
                raise InstallError(f"docker load failed: {msg['error']}")
    except InstallError:
        raise
    except load_errors as exc:  # the transport may wrap our own error
        if failure:
            raise failure[0] from None
        raise InstallError(f"docker load failed: {type(exc).__name__}: {exc}") from None
    if failure:
        raise failure[0]


def layer_media_types(layout_dir: Path, images: Iterable[LockedImage]) -> dict[str, set[str]]:
    """Layer media types per image reference (from the layout), for lock/doctor warnings."""
    layout = OciLayout(layout_dir)
    return {img.ref: {layer.media_type for layer in layout.find(img).manifest.layers} for img in images}


def unloadable_layers(media_types: Iterable[str], engine_version: str) -> list[str]:
    """Media types an engine of ``engine_version`` cannot ``docker load`` (zstd needs Docker ≥ 23)."""
    try:
        major = int(engine_version.split(".", 1)[0])
    except ValueError:
        major = 0
    zstd = {OCI_LAYER_ZSTD, "application/vnd.docker.image.rootfs.diff.tar.zstd"}
    return sorted(mt for mt in set(media_types) if mt in zstd and major < 23)


__all__ = ["airpack_tag", "config_platform", "layer_media_types", "load_into_engine",
           "resolve_engine_image", "save_from_engine", "unloadable_layers"]
