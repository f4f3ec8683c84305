"""Far side: load images from a verified OCI layout into the local docker engine, and what an engine can load.

Streams a docker-archive built from the layout (``airpack.oci.archive``) to the engine; never imports the
build-side registry fetch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from airpack.errors import InstallError, VerificationError
from airpack.lock import LockedImage
from airpack.oci.archive import ArchiveEntry, DockerArchive
from airpack.oci.engine import Progress, airpack_tag, docker_errors, stream_errors
from airpack.oci.layout import OciLayout
from airpack.oci.manifest import OCI_LAYER_ZSTD
from airpack.oci.reference import parse_reference


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
            except docker_errors() as exc:
                raise InstallError(f"{tag}: not present after docker load ({type(exc).__name__})") from None
            if got != locked.config_digest:
                raise VerificationError(f"{tag}: loaded image ID {got} is not the signed {locked.config_digest}")
    return [tags[0] for tags in all_tags]


def _has_image(client: Any, image_id: str) -> bool:
    try:
        return bool(client.api.inspect_image(image_id)["Id"] == image_id)
    except docker_errors():
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

    load_errors: tuple[type[Exception], ...] = (VerificationError, *stream_errors())
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
