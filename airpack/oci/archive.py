"""Stream a docker-archive (what ``docker load`` reads) out of an OCI layout, without a copy on disk.

Docker 20.10 cannot load an OCI layout, so the target builds the legacy format on the fly::

    manifest.json                 [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<hex>/layer.tar"]}]
    <hex>.json                    the config blob (its sha256 is the image ID)
    <hex>/layer.tar               each layer blob, byte for byte (docker load decompresses gzip itself)

Every blob is hashed again while it streams; bytes that differ from the digest (a medium that returns
something else on a second read) raise ``VerificationError`` before the archive is terminated, so the
engine sees a truncated upload and loads nothing. Memory stays at one block.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from airpack.errors import VerificationError
from airpack.oci.layout import LayoutImage, OciLayout

BLOCK = 4 * 1024 * 1024  # bounded memory: one block in flight
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ArchiveEntry:
    """One image to put in the archive, with the tags ``docker load`` should give it."""

    image: LayoutImage
    repo_tags: tuple[str, ...]


def _header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mtime = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def archive_manifest(entries: list[ArchiveEntry]) -> bytes:
    doc = [
        {
            "Config": f"{e.image.manifest.config.digest[7:]}.json",
            "RepoTags": list(e.repo_tags),
            "Layers": [f"{layer.digest[7:]}/layer.tar" for layer in e.image.manifest.layers],
        }
        for e in entries
    ]
    return json.dumps(doc, separators=(",", ":")).encode()


def _stream_blob(layout: OciLayout, digest: str, size: int, progress: Progress | None) -> Iterator[bytes]:
    path = layout.blob_path(digest)
    h = hashlib.sha256()
    left = size
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise VerificationError(f"{path}: blob {digest} is missing from the layout") from None
    # Hash each block on a second thread while the previous one is being sent (hashlib and socket writes
    # both release the GIL): the re-hash costs no wall time on top of the transfer. Updates stay in order.
    with fh, ThreadPoolExecutor(max_workers=1) as hasher:
        pending: Future[None] | None = None
        while left:
            block = fh.read(min(BLOCK, left))
            if not block:
                raise VerificationError(f"{path}: blob ends {left} bytes early (expected {size} bytes)")
            if pending is not None:
                pending.result()
            pending = hasher.submit(h.update, block)
            left -= len(block)
            yield block
            if progress:
                progress(len(block))
        if pending is not None:
            pending.result()
        if fh.read(1):
            raise VerificationError(f"{path}: blob is longer than its {size} bytes")
    if "sha256:" + h.hexdigest() != digest:
        raise VerificationError(f"{path}: bytes read now do not match {digest}",
                                hint="the medium returned different bytes than at verification; copy it again")


def docker_archive(layout: OciLayout, entries: list[ArchiveEntry], *,
                   progress: Progress | None = None) -> Iterator[bytes]:
    """Yield the docker-archive tar for ``entries``; shared blobs are written once."""
    manifest = archive_manifest(entries)
    yield _header("manifest.json", len(manifest)) + manifest + _pad(len(manifest))
    seen: set[str] = set()
    for entry in entries:
        config = entry.image.manifest.config
        if config.digest not in seen:
            seen.add(config.digest)
            yield _header(f"{config.digest[7:]}.json", config.size)
            yield from _stream_blob(layout, config.digest, config.size, progress)
            yield _pad(config.size)
        for layer in entry.image.manifest.layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            yield _header(f"{layer.digest[7:]}/", 0, directory=True)
            yield _header(f"{layer.digest[7:]}/layer.tar", layer.size)
            yield from _stream_blob(layout, layer.digest, layer.size, progress)
            yield _pad(layer.size)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)
