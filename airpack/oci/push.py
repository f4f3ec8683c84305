"""Push images from an OCI layout into an internal registry (distribution, Harbor), byte for byte.

Repository paths follow the one naming rule (:func:`airpack.oci.reference.site_reference`): the source path
under an optional prefix (``reg:5000/mirror`` + ``docker.io/library/busybox`` →
``reg:5000/mirror/library/busybox``); tags and manifest digests are kept. Blobs the
registry already has are skipped (HEAD); blobs pushed to another repository in the same run are mounted
(the weights image mounts the runtime image's layers from the repository ``airpack push`` put them in);
large blobs go in chunks (``PATCH`` with ``Content-Range``), and an interrupted chunk is resumed from the
offset the registry reports (``GET`` on the upload URL), not from zero.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airpack._fs import open_regular
from airpack.errors import FetchError, VerificationError
from airpack.lock import LockedImage
from airpack.oci.auth import RegistryOptions
from airpack.oci.layout import OciLayout
from airpack.oci.manifest import Descriptor
from airpack.oci.modelpack import Artifact
from airpack.oci.reference import model_repository, site_repository, site_tag, split_site_registry
from airpack.oci.registry import RegistryClient, check_status
from airpack.oci.weights_image import WeightsImage, weights_repository, weights_tag

Progress = Callable[[int], None]
DEFAULT_CHUNK = 64 * 1024 * 1024


class _Slice(io.RawIOBase):
    """``length`` bytes of an open file from ``start``: a seekable request body of known length."""

    def __init__(self, fh: Any, start: int, length: int) -> None:
        self._fh, self._start, self._len, self._pos = fh, start, length, 0

    def __len__(self) -> int:
        return self._len - self._pos

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        left = self._len - self._pos
        n = left if size is None or size < 0 else min(size, left)
        self._fh.seek(self._start + self._pos)
        data: bytes = self._fh.read(n)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos if whence == 1 else self._len + pos
        return self._pos


class _Framed(io.RawIOBase):
    """``head`` + the first ``size`` bytes of an open file + ``tail``, seekable: a weights layer's tar, sent
    without writing it anywhere (the file is read once, in the slices the upload asks for)."""

    def __init__(self, head: bytes, fh: Any, size: int, tail: bytes) -> None:
        self._head, self._fh, self._size, self._tail, self._pos = head, fh, size, tail, 0
        self._len = len(head) + size + len(tail)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self._len - self._pos if size is None or size < 0 else min(size, self._len - self._pos)
        parts: list[bytes] = []
        while want > 0:
            pos, body_end = self._pos, len(self._head) + self._size
            if pos < len(self._head):
                data = self._head[pos:pos + want]
            elif pos < body_end:
                self._fh.seek(pos - len(self._head))
                data = self._fh.read(min(want, body_end - pos))
                if not data:
                    raise VerificationError(f"{getattr(self._fh, 'name', 'a model file')}: shorter than its "
                                            f"signed {self._size} bytes")
            else:
                data = self._tail[pos - body_end:pos - body_end + want]
            parts.append(data)
            self._pos += len(data)
            want -= len(data)
        return b"".join(parts)

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else self._pos + pos if whence == 1 else self._len + pos
        return self._pos

    def tell(self) -> int:
        return self._pos


@dataclass(frozen=True)
class Blob:
    """A blob to upload: its descriptor and the file that holds exactly its bytes (from offset 0), or, with a
    ``head`` or ``tail``, the bytes ``head + file + tail`` (a weights layer's tar around a model file)."""

    descriptor: Descriptor
    path: Path
    head: bytes = b""
    tail: bytes = b""


class Pusher:
    """One registry session: blobs (skipped when present, mounted when pushed to another repository in this
    session, else uploaded in resumable chunks) and manifests, byte for byte."""

    def __init__(self, client: RegistryClient, *, chunk_size: int = DEFAULT_CHUNK, progress: Progress | None = None,
                 retries: int = 3) -> None:
        self.client, self.chunk_size, self.progress, self.retries = client, chunk_size, progress, retries
        self.pushed: dict[str, str] = {}  # blob digest -> a repository that has it (for cross-repo mounts)

    def blob(self, repo: str, blob: Blob) -> None:
        _push_blob(self.client, blob, repo, self.pushed, self.chunk_size, self.progress, self.retries)
        self.pushed.setdefault(blob.descriptor.digest, repo)

    def blob_bytes(self, repo: str, descriptor: Descriptor, data: bytes) -> None:
        """A small blob held in memory (a config); its digest is checked by the registry on upload."""
        client = self.client
        if client.blob_exists(repo, descriptor.digest, actions="pull,push"):
            return
        resp = client.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, actions="pull,push")
        check_status(resp, (202,), f"{client.registry}/{repo}: starting upload of {descriptor.digest}")
        resp = client.request("PUT", "", url=client.absolute(resp.headers["Location"]),
                              params={"digest": descriptor.digest}, repo=repo, actions="pull,push", body=data,
                              headers={"Content-Type": "application/octet-stream"})
        check_status(resp, (201,), f"{client.registry}/{repo} blob {descriptor.digest}: upload")
        self.pushed.setdefault(descriptor.digest, repo)

    def manifest(self, repo: str, reference: str, media_type: str, raw: bytes, digest: str) -> str:
        """PUT the manifest under ``reference`` (a tag or its digest); returns ``host/repo@digest``."""
        host = self.client.registry
        resp = self.client.request("PUT", f"/v2/{repo}/manifests/{reference}", repo=repo, actions="pull,push",
                                   headers={"Content-Type": media_type}, body=raw)
        check_status(resp, (201, 200), f"{host}/{repo}:{reference}: manifest upload")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise FetchError(f"{host}/{repo}: registry stored manifest {got}, not {digest}",
                             hint="the registry rewrote the manifest; it cannot keep signed digests")
        return f"{host}/{repo}@{digest}"


def push_layout(
    layout_dir: Path, images: list[LockedImage], registry: str, *, options: RegistryOptions | None = None,
    chunk_size: int = DEFAULT_CHUNK, progress: Progress | None = None, retries: int = 3,
) -> list[str]:
    """Push ``images`` from the layout; returns ``host/prefix/repo@sha256:…`` for each, in order (the one naming
    rule: :func:`airpack.oci.reference.site_reference`)."""
    host, prefix = split_site_registry(registry)
    layout = OciLayout(layout_dir)
    out: list[str] = []
    with RegistryClient(host, options) as client:
        pusher = Pusher(client, chunk_size=chunk_size, progress=progress, retries=retries)
        for locked in images:
            found = layout.find(locked)
            repo = site_repository(prefix, locked.ref)
            for blob in {b.digest: b for b in found.manifest.blobs}.values():
                pusher.blob(repo, Blob(blob, layout.blob_path(blob.digest)))
            reference = locked.tag or found.descriptor.digest
            out.append(pusher.manifest(repo, reference, found.descriptor.media_type, found.raw,
                                       found.descriptor.digest))
    return out


def push_model(artifact: Artifact, model_dir: Path, registry: str, name: str, version: str, *,
               options: RegistryOptions | None = None, chunk_size: int = DEFAULT_CHUNK,
               progress: Progress | None = None, retries: int = 3) -> str:
    """Push a ModelPack artifact to ``REGISTRY/<name>:<version>``: each raw layer from its file under
    ``model_dir`` (the registry checks each upload against the layer's digest, the file's signed sha256), then
    the config and the manifest. Returns ``host/prefix/name@sha256:…``."""
    host, prefix = split_site_registry(registry)
    repo, tag = model_repository(prefix, name), site_tag(version)
    with RegistryClient(host, options) as client:
        pusher = Pusher(client, chunk_size=chunk_size, progress=progress, retries=retries)
        for layer in artifact.layers:
            pusher.blob(repo, Blob(layer.descriptor, model_dir / layer.file.path))
        pusher.blob_bytes(repo, artifact.config_descriptor, artifact.config)
        return pusher.manifest(repo, tag, artifact.manifest_descriptor.media_type, artifact.manifest,
                               artifact.manifest_descriptor.digest)


def push_weights_image(image: WeightsImage, layout_dir: Path, model_dir: Path, registry: str, name: str,
                       version: str, *, options: RegistryOptions | None = None, chunk_size: int = DEFAULT_CHUNK,
                       progress: Progress | None = None, retries: int = 3) -> str:
    """Push the weights image to ``REGISTRY/<name>:<version>-weights`` (beside the model artifact): the base
    layers mounted from the runtime image's site repository (uploaded from the layout when the registry does not
    mount), each tar layer streamed as ``head + file + tail`` (:func:`airpack.oci.weights_image.tar_frame`),
    then the config and the manifest; blobs the registry has are skipped. Returns ``host/prefix/name@sha256:…``."""
    host, prefix = split_site_registry(registry)
    repo, tag = weights_repository(prefix, name), weights_tag(version)
    base_repo = site_repository(prefix, image.base.source)
    layout = OciLayout(layout_dir)
    with RegistryClient(host, options) as client:
        pusher = Pusher(client, chunk_size=chunk_size, progress=progress, retries=retries)
        for desc in {d.digest: d for d in image.base.layers}.values():
            pusher.pushed.setdefault(desc.digest, base_repo)
            pusher.blob(repo, Blob(desc, layout.blob_path(desc.digest)))
        for layer in image.layers:
            head, tail = layer.frame()
            pusher.blob(repo, Blob(layer.descriptor, model_dir / layer.file.path, head, tail))
        pusher.blob_bytes(repo, image.config_descriptor, image.config)
        return pusher.manifest(repo, tag, image.manifest_descriptor.media_type, image.manifest,
                               image.manifest_descriptor.digest)


def _push_blob(client: RegistryClient, source: Blob, repo: str, pushed: dict[str, str], chunk_size: int,
               progress: Progress | None, retries: int) -> None:
    blob, path = source.descriptor, source.path
    if client.blob_exists(repo, blob.digest, actions="pull,push"):
        return
    params = {"mount": blob.digest, "from": pushed[blob.digest]} if blob.digest in pushed else None
    resp = client.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, actions="pull,push", params=params)
    if resp.status_code == 201:
        return  # mounted
    check_status(resp, (202,), f"{client.registry}/{repo}: starting upload of {blob.digest}")
    location = client.absolute(resp.headers["Location"])
    where = f"{client.registry}/{repo} blob {blob.digest}"
    with os.fdopen(open_regular(path), "rb") as raw:  # no link, no FIFO; reads stop at the blob's size
        fh: Any = raw
        if source.head or source.tail:
            fh = _Framed(source.head, raw, blob.size - len(source.head) - len(source.tail), source.tail)
        if blob.size <= chunk_size:
            resp = client.request("PUT", "", url=location, params={"digest": blob.digest}, repo=repo,
                                  actions="pull,push", body=_Slice(fh, 0, blob.size),
                                  headers={"Content-Type": "application/octet-stream"})
            check_status(resp, (201,), f"{where}: upload")
            if progress:
                progress(blob.size)
            return
        location = _patch_chunks(client, repo, fh, blob, location, chunk_size, progress, retries, where)
    resp = client.request("PUT", "", url=location, params={"digest": blob.digest}, repo=repo,
                          actions="pull,push", body=b"", headers={"Content-Length": "0"})
    check_status(resp, (201,), f"{where}: completing upload")


def _patch_chunks(client: RegistryClient, repo: str, fh: Any, blob: Descriptor, location: str, chunk_size: int,
                  progress: Progress | None, retries: int, where: str) -> str:
    offset, failures = 0, 0
    while offset < blob.size:
        end = min(offset + chunk_size, blob.size)
        try:
            resp = client.request("PATCH", "", url=location, repo=repo, actions="pull,push",
                                  body=_Slice(fh, offset, end - offset),
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Range": f"{offset}-{end - 1}"})
            check_status(resp, (202,), f"{where}: chunk {offset}-{end - 1}")
        except FetchError as exc:
            failures += 1
            if failures > retries:
                raise FetchError(f"{where}: upload failed at byte {offset} ({exc.message})") from None
            time.sleep(min(0.5 * failures, 2.0))
            location, offset = _upload_status(client, repo, location, where)
            continue
        location = client.absolute(resp.headers.get("Location", location))
        if progress:
            progress(end - offset)
        offset = _range_end(resp.headers.get("Range"), end)
    return location


def _range_end(header: str | None, default: int) -> int:
    """The next offset from a ``Range: 0-N`` upload-status header (inclusive end).

    distribution answers ``0-0`` for an empty upload as well as for one byte; chunks are never one byte,
    so ``0-0`` means nothing was stored.
    """
    if not header:
        return default
    _, _, last = header.rpartition("-")
    if not last.isdigit():
        return default
    return int(last) + 1 if int(last) else 0


def _upload_status(client: RegistryClient, repo: str, location: str, where: str) -> tuple[str, int]:
    """Ask the registry how much of the upload it holds (resume point)."""
    resp = client.request("GET", "", url=location, repo=repo, actions="pull,push")
    check_status(resp, (204,), f"{where}: upload status")
    return client.absolute(resp.headers.get("Location", location)), _range_end(resp.headers.get("Range"), 0)
