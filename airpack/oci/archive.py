"""Stream a docker-archive (what ``docker load`` reads) out of an OCI layout, without a copy on disk.

Docker 20.10 cannot load an OCI layout, so the target builds the legacy format on the fly::

    manifest.json                 [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<hex>/layer.tar"]}]
    <hex>.json                    the config blob (its sha256 is the image ID)
    <hex>/layer.tar               each layer blob, byte for byte (docker load decompresses gzip itself)

Every blob is hashed again while it streams (from two reused buffers, sent with a Content-Length); bytes that differ from the digest (a medium that returns
something else on a second read) raise ``VerificationError`` before the archive is terminated, so the
engine sees a truncated upload and loads nothing. Memory stays at two blocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from airpack._fs import open_regular
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


@dataclass(frozen=True)
class _Blob:
    """A layout blob in the archive's sequence of parts (the rest are literal bytes: headers, padding)."""

    digest: str
    size: int


def _stream_blob(layout: OciLayout, digest: str, size: int, progress: Progress | None) -> Iterator[memoryview]:
    """Yield the blob's bytes, hashing them; each view is valid only until the next one is requested.

    Two buffers alternate: while one is being sent, the hasher thread may still read the other, and a buffer is
    filled again only after its hash update finished. No block is allocated per read (a 1 GiB load used to
    allocate 256 fresh 4 MiB objects, and the HTTP layer copied each once more for chunked framing).
    """
    path = layout.blob_path(digest)
    h = hashlib.sha256()
    left = size
    try:
        fh = os.fdopen(open_regular(path), "rb", buffering=0)  # no link, no FIFO: it is on the medium
    except FileNotFoundError:
        raise VerificationError(f"{path}: blob {digest} is missing from the layout") from None
    except OSError as exc:
        raise VerificationError(f"{path}: unusable blob ({exc})") from None
    buffers = (bytearray(min(BLOCK, size)), bytearray(min(BLOCK, size)))
    # Hash each block on a second thread while it is being sent (hashlib and socket writes both release the
    # GIL): the re-hash costs no wall time on top of the transfer. Updates stay in order.
    with fh, ThreadPoolExecutor(max_workers=1) as hasher:
        pending: Future[None] | None = None
        turn = 0
        while left:
            view = memoryview(buffers[turn])[: min(BLOCK, left)]
            got = 0
            while got < len(view) and (n := fh.readinto(view[got:])):
                got += n
            if not got:
                raise VerificationError(f"{path}: blob ends {left} bytes early (expected {size} bytes)")
            view = view[:got]
            if pending is not None:
                pending.result()  # the other buffer's update is done: it may be refilled next turn
            pending = hasher.submit(h.update, view)
            left -= got
            yield view
            turn ^= 1
            if progress:
                progress(got)
        if pending is not None:
            pending.result()
        if fh.read(1):
            raise VerificationError(f"{path}: blob is longer than its {size} bytes")
    if "sha256:" + h.hexdigest() != digest:
        raise VerificationError(f"{path}: bytes read now do not match {digest}",
                                hint="the medium returned different bytes than at verification; copy it again")


def _parts(entries: list[ArchiveEntry]) -> list[bytes | _Blob]:
    """The archive as literal bytes and blobs, in order; shared blobs appear once."""
    manifest = archive_manifest(entries)
    parts: list[bytes | _Blob] = [_header("manifest.json", len(manifest)) + manifest + _pad(len(manifest))]
    seen: set[str] = set()
    for entry in entries:
        config = entry.image.manifest.config
        if config.digest not in seen:
            seen.add(config.digest)
            parts += [_header(f"{config.digest[7:]}.json", config.size), _Blob(config.digest, config.size),
                      _pad(config.size)]
        for layer in entry.image.manifest.layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            parts += [_header(f"{layer.digest[7:]}/", 0, directory=True)
                      + _header(f"{layer.digest[7:]}/layer.tar", layer.size),
                      _Blob(layer.digest, layer.size), _pad(layer.size)]
    parts.append(b"\0" * (2 * tarfile.BLOCKSIZE))
    return parts


class DockerArchive:
    """The docker-archive tar for ``entries``, shaped as an HTTP request body.

    ``len()`` is its exact size, so the transport sends it with a ``Content-Length`` and passes every block to
    the socket as it is (a body of unknown length goes chunked, which copies each block once more). Iterating
    yields the bytes with every blob hashed again; a yielded block is valid only until the next one is
    requested (buffers are reused), so a consumer must use or copy it first, as a socket send does.
    """

    def __init__(self, layout: OciLayout, entries: list[ArchiveEntry], *, progress: Progress | None = None) -> None:
        self._layout = layout
        self._parts = _parts(entries)
        self._progress = progress

    def __len__(self) -> int:
        return sum(p.size if isinstance(p, _Blob) else len(p) for p in self._parts)

    def __iter__(self) -> Iterator[bytes | memoryview]:
        for part in self._parts:
            if isinstance(part, _Blob):
                yield from _stream_blob(self._layout, part.digest, part.size, self._progress)
            elif part:
                yield part
