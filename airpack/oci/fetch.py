"""Build time: fetch a locked image's blobs from its registry into an OCI image layout.

Blobs are downloaded into ``cache_dir`` (``blobs/sha256/<hex>`` when complete, ``partial/<hex>`` while
downloading), hashed as they are written, resumed with ``Range`` after an interruption, and only then
hard-linked (or copied) into the layout. Compressed layers are kept byte for byte. Nothing enters the layout
until every blob of the image matched its digest, so a failed fetch leaves the layout as it was.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Self

import requests
import urllib3.exceptions

from airpack._fs import write_pieces
from airpack.errors import FetchError, SourceError
from airpack.hashing import DigestSink, FileDigest, copy_and_hash, hash_file
from airpack.lock import LockedImage
from airpack.oci.auth import RegistryOptions
from airpack.oci.layout import FetchedImage, OciLayout, ref_name
from airpack.oci.manifest import Descriptor, parse_manifest
from airpack.oci.reference import parse_reference
from airpack.oci.registry import RegistryClient
from airpack.oci.resolve import check_tag_unmoved

Progress = Callable[[int], None]
# Received 4 MiB at a time (fewer round trips through urllib3), written 1 MiB at a time (see airpack._fs: measured
# on this VM, a 1 GiB fetch took 1.65-2.65 s with 1 MiB writes, 3.2-4.9 s with 4 MiB writes).
BLOCK = 4 * 1024 * 1024
_TRANSIENT = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def fetch_image(
    locked: LockedImage, layout_dir: Path, *, cache_dir: Path, progress: Progress | None = None,
    options: RegistryOptions | None = None, workers: int = 4, retries: int = 3,
    engine: Any = None,
) -> FetchedImage:
    """Fetch ``locked`` into the OCI layout at ``layout_dir``.

    ``source="engine"`` images are saved from the docker engine ``engine`` (a ``docker.DockerClient``).
    A tag that moved since lock is a ``SourceError``; bytes that do not match a digest, or a registry that
    fails (after ``retries`` resumed attempts), a ``FetchError``. Rerunning resumes partial downloads.
    """
    if locked.source == "engine":
        if engine is None:
            raise FetchError(f"{locked.ref}: a local-engine image needs a docker client to be fetched")
        from airpack.oci.engine_save import save_from_engine  # engine support is optional  # noqa: PLC0415

        return save_from_engine(engine, locked, layout_dir, progress=progress)
    parsed = parse_reference(locked.ref)
    layout = OciLayout.create(layout_dir)
    with RegistryClient(parsed.registry, options, pool=workers) as client:
        check_tag_unmoved(locked, client)
        raw, media_type, digest = client.get_manifest(parsed.repository, locked.digest, locked.ref)
        manifest = parse_manifest(raw, media_type, locked.ref)
        if manifest.config.digest != locked.config_digest:
            raise FetchError(f"{locked.ref}: manifest names config {manifest.config.digest}, "
                             f"the lock says {locked.config_digest}")
        unique = list({b.digest: b for b in manifest.blobs}.values())
        todo = [b for b in unique if not layout.has_blob(b.digest, b.size)]
        cache = BlobCache(cache_dir)
        # Same file system: download into the cache, hard-link into the layout. Another one (the bundle on
        # removable media): write both copies in the one pass rather than copy the cache file afterwards.
        tee = cache.done.stat().st_dev != layout.blobs.stat().st_dev
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(pool.map(
                lambda b: cache.ensure(client, parsed.repository, b, progress=progress, retries=retries,
                                       place=layout.blob_path(b.digest) if tee else None),
                sorted(todo, key=lambda b: -b.size)))
    # Every blob is verified in the cache; only now does anything enter the layout.
    for blob, (path, _, _) in zip(sorted(todo, key=lambda b: -b.size), results, strict=True):
        layout.put_verified_file(path, blob.digest, blob.size)
    desc = layout.put_bytes(raw)
    name = ref_name(locked)
    layout.add_manifest(Descriptor(media_type, desc.digest, desc.size), name, manifest.config.digest)
    digests = {b.digest: d for b, (_, d, _) in zip(sorted(todo, key=lambda b: -b.size), results, strict=True)}
    return FetchedImage(locked, digest, name, manifest.blobs, sum(n for _, _, n in results), digests)


class BlobCache:
    """Verified blobs by digest, plus resumable partial downloads. One writer per blob (``flock``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done = root / "blobs" / "sha256"
        self.partial = root / "partial"
        self.done.mkdir(parents=True, exist_ok=True)
        self.partial.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.done / digest.removeprefix("sha256:")

    def ensure(self, client: RegistryClient, repo: str, blob: Descriptor, *,
               progress: Progress | None = None, retries: int = 3, place: Path | None = None,
               ) -> tuple[Path, FileDigest, int]:
        """The cache path of ``blob`` (downloading it if needed), its digests and the bytes downloaded.

        A blob already in the cache is hashed again before it is used: the cache is a convenience, never
        trusted. ``place``: also write the blob there (the bundle's layout on another file system, where a
        hard link cannot reach), in the same pass: downloaded bytes are written to both files as they arrive,
        a cached blob is copied while it is hashed, so each byte is read once either way.
        """
        final = self.path(blob.digest)
        part = self.partial / final.name
        with part.open("ab") as lockfh:
            fcntl.flock(lockfh, fcntl.LOCK_EX)
            if final.exists():
                with _Tee(place) as tee:
                    digest = copy_and_hash(final, tee.fh, progress=progress) if tee.fh else hash_file(
                        final, progress=progress)
                    if "sha256:" + digest.sha256 == blob.digest and digest.size == blob.size:
                        part.unlink(missing_ok=True)
                        tee.commit()
                        return final, digest, 0
                final.unlink()  # a corrupted cache entry is dropped, never used
            return final, *self._download(client, repo, blob, part, final, progress, retries, place)

    def _download(self, client: RegistryClient, repo: str, blob: Descriptor, part: Path, final: Path,
                  progress: Progress | None, retries: int, place: Path | None) -> tuple[FileDigest, int]:
        where = f"{client.registry}/{repo}@{blob.digest}"
        fetched = 0
        resumed = False
        attempt = 0
        while True:
            offset = part.stat().st_size
            if offset > blob.size:
                part.write_bytes(b"")
                offset = 0
            try:
                # A resumed download is not mirrored (the first bytes are only in the cache): the caller
                # copies it after, as for a cache on the same file system.
                with _Tee(place if offset == 0 else None) as tee:
                    got, digest = self._stream(client, repo, blob, part, offset, progress, where, tee.fh)
                    fetched += got
                    if "sha256:" + digest.sha256 == blob.digest and digest.size == blob.size:
                        tee.commit()
            except FetchError as exc:
                if not _is_transient(exc) or attempt >= retries:
                    raise FetchError(f"{where}: download interrupted at byte {part.stat().st_size} of "
                                     f"{blob.size} ({exc.message})",
                                     hint="rerun the build: the download resumes where it stopped") from None
                attempt += 1
                resumed = True
                time.sleep(min(0.5 * attempt, 2.0))
                continue
            h = "sha256:" + digest.sha256
            if h == blob.digest and digest.size == blob.size == part.stat().st_size:
                part.replace(final)
                return digest, fetched
            if resumed or offset:
                part.write_bytes(b"")  # a bad resume (e.g. a torn partial file): retry once from zero
                resumed, offset = False, 0
                if attempt < retries:
                    attempt += 1
                    continue
            part.unlink(missing_ok=True)
            raise FetchError(f"{where}: downloaded bytes hash to {h} ({part.name}), not the locked digest",
                             hint="the registry holds corrupted data or a proxy altered it; nothing was kept")

    @staticmethod
    def _stream(client: RegistryClient, repo: str, blob: Descriptor, part: Path, offset: int,
                progress: Progress | None, where: str, tee: BinaryIO | None = None) -> tuple[int, FileDigest]:
        """Append the blob's bytes from ``offset`` to ``part``; digests of the whole file as it then is.

        This thread only receives and writes; the ``DigestSink`` hashes on one more thread.
        """
        sink = DigestSink()
        try:
            if offset:
                _feed(part, sink)
            try:
                resp = client.open_blob(repo, blob.digest, offset)
            except FetchError as exc:
                exc.transient = True  # type: ignore[attr-defined]
                raise
            got = 0
            with resp:
                if resp.status_code == 404:
                    raise SourceError(f"{where}: the registry no longer has this blob",
                                      hint="the image was deleted upstream; run 'airpack lock' again")
                if resp.status_code == 206 and offset:
                    mode = "ab"
                elif resp.status_code == 200:
                    mode = "wb"
                    sink.close()
                    sink = DigestSink()
                else:
                    raise FetchError(f"{where}: HTTP {resp.status_code}")
                try:
                    # Buffered: a 1 MiB piece goes straight through, and a short write(2) is retried, not lost.
                    with part.open(mode) as fh:
                        for block in resp.raw.stream(BLOCK, decode_content=False):
                            write_pieces(fh, block)
                            if tee is not None:
                                write_pieces(tee, block)
                            sink.update(block)
                            got += len(block)
                            if progress:
                                progress(len(block))
                except _TRANSIENT as exc:
                    err = FetchError(f"{type(exc).__name__}")
                    err.transient = True  # type: ignore[attr-defined]
                    raise err from None
        finally:
            digest = sink.close()
        return got, digest


def _is_transient(exc: FetchError) -> bool:
    return bool(getattr(exc, "transient", False))


class _Tee:
    """A second copy of a blob being downloaded or read: a temporary file beside ``place``, renamed onto it
    by ``commit`` once the caller has matched the digest, removed otherwise (``fh`` is None without
    ``place``)."""

    def __init__(self, place: Path | None) -> None:
        self.place = place
        self.tmp = place.with_name(f".{place.name[:12]}.{os.getpid()}.{threading.get_ident()}.tee") if place else None
        self.fh: BinaryIO | None = None
        self._done = False

    def __enter__(self) -> Self:
        if self.tmp is not None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.tmp.open("wb")
        return self

    def commit(self) -> None:
        if self.fh is not None and self.tmp is not None and self.place is not None:
            self.fh.close()
            self.tmp.chmod(0o644)
            self.tmp.replace(self.place)
            self._done = True

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.tmp is not None and not self._done:
            self.tmp.unlink(missing_ok=True)


def _feed(path: Path, sink: DigestSink) -> None:
    with path.open("rb", buffering=0) as fh:
        while block := fh.read(BLOCK):
            sink.update(block)


__all__ = ["BlobCache", "FetchedImage", "fetch_image"]
