"""Build time: fetch a locked image's blobs from its registry into an OCI image layout.

Blobs are downloaded into ``cache_dir`` (``blobs/sha256/<hex>`` when complete, ``partial/<hex>`` while
downloading), hashed as they are written, resumed with ``Range`` after an interruption, and only then
hard-linked (or copied) into the layout. Compressed layers are kept byte for byte. Nothing enters the layout
until every blob of the image matched its digest, so a failed fetch leaves the layout as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions

from airpack.errors import FetchError, SourceError
from airpack.lock import LockedImage
from airpack.oci.auth import RegistryOptions
from airpack.oci.layout import OciLayout, ref_name
from airpack.oci.manifest import Descriptor, parse_manifest
from airpack.oci.reference import parse_reference
from airpack.oci.registry import RegistryClient
from airpack.oci.resolve import check_tag_unmoved

Progress = Callable[[int], None]
BLOCK = 1024 * 1024
_TRANSIENT = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class FetchedImage:
    """What ``fetch_image`` put in the layout. ``downloaded`` counts bytes that crossed the network."""

    locked: LockedImage
    manifest_digest: str
    ref_name: str
    blobs: tuple[Descriptor, ...]
    downloaded: int = 0


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
        from airpack.oci.engine import save_from_engine  # engine support is optional  # noqa: PLC0415

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
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(pool.map(
                lambda b: cache.ensure(client, parsed.repository, b, progress=progress, retries=retries),
                sorted(todo, key=lambda b: -b.size)))
    # Every blob is verified in the cache; only now does anything enter the layout.
    for blob, (path, _) in zip(sorted(todo, key=lambda b: -b.size), results, strict=True):
        layout.put_verified_file(path, blob.digest, blob.size)
    desc = layout.put_bytes(raw)
    name = ref_name(locked)
    layout.add_manifest(Descriptor(media_type, desc.digest, desc.size), name, manifest.config.digest)
    return FetchedImage(locked, digest, name, manifest.blobs, sum(n for _, n in results))


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
               progress: Progress | None = None, retries: int = 3) -> tuple[Path, int]:
        """The cache path of ``blob`` (downloading it if needed) and the bytes downloaded."""
        final = self.path(blob.digest)
        part = self.partial / final.name
        with part.open("ab") as lockfh:
            fcntl.flock(lockfh, fcntl.LOCK_EX)
            if final.exists():
                if _file_digest(final) == blob.digest and final.stat().st_size == blob.size:
                    part.unlink(missing_ok=True)
                    return final, 0
                final.unlink()  # a corrupted cache entry is dropped, never used
            return final, self._download(client, repo, blob, part, final, progress, retries)

    def _download(self, client: RegistryClient, repo: str, blob: Descriptor, part: Path, final: Path,
                  progress: Progress | None, retries: int) -> int:
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
                got, h = self._stream(client, repo, blob, part, offset, progress, where)
                fetched += got
            except FetchError as exc:
                if not _is_transient(exc) or attempt >= retries:
                    raise FetchError(f"{where}: download interrupted at byte {part.stat().st_size} of "
                                     f"{blob.size} ({exc.message})",
                                     hint="rerun the build: the download resumes where it stopped") from None
                attempt += 1
                resumed = True
                time.sleep(min(0.5 * attempt, 2.0))
                continue
            if h == blob.digest and part.stat().st_size == blob.size:
                part.replace(final)
                return fetched
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
                progress: Progress | None, where: str) -> tuple[int, str]:
        h = hashlib.sha256()
        if offset:
            _hash_into(part, h)
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
                mode, h = "wb", hashlib.sha256()
            else:
                raise FetchError(f"{where}: HTTP {resp.status_code}")
            try:
                with part.open(mode) as fh:
                    for block in resp.raw.stream(BLOCK, decode_content=False):
                        fh.write(block)
                        h.update(block)
                        got += len(block)
                        if progress:
                            progress(len(block))
            except _TRANSIENT as exc:
                err = FetchError(f"{type(exc).__name__}")
                err.transient = True  # type: ignore[attr-defined]
                raise err from None
        return got, "sha256:" + h.hexdigest()


def _is_transient(exc: FetchError) -> bool:
    return bool(getattr(exc, "transient", False))


def _hash_into(path: Path, h: Any) -> None:
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            h.update(block)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with contextlib.suppress(FileNotFoundError):
        _hash_into(path, h)
    return "sha256:" + h.hexdigest()


__all__ = ["BlobCache", "FetchedImage", "fetch_image"]
