"""The OCI image layout on disk: ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``.

Blobs only ever appear under their final name after their bytes were hashed and matched (write to a
temporary name in the same directory, then rename), so a layout never holds a blob that lies about its name.
Each ``index.json`` entry is annotated with ``org.opencontainers.image.ref.name`` = the full reference
(``registry/repo:tag``; what ``skopeo inspect oci:<dir>:<ref>`` looks up) and ``io.containerd.image.name``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airpack._fs import atomic_write_bytes, read_capped
from airpack.errors import FetchError, VerificationError
from airpack.hashing import FileDigest
from airpack.lock import LockedImage
from airpack.oci.manifest import (
    OCI_INDEX,
    Descriptor,
    Manifest,
    parse_manifest,
    sha256_digest,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
AIRPACK_CONFIG = "dev.airpack.image.config"
LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
MAX_INDEX_BYTES = 16 * 1024 * 1024  # index.json is read whole, capped: it comes from the medium


def ref_name(locked: LockedImage) -> str:
    """The index annotation for an image: its tag reference, or ``name@digest`` when locked by digest."""
    name = locked.ref.split("@", 1)[0]
    return name if locked.tag else f"{name}@{locked.digest or locked.config_digest}"


@dataclass(frozen=True)
class LayoutImage:
    """An image found in a layout: its manifest descriptor, exact manifest bytes and parsed manifest."""

    descriptor: Descriptor
    raw: bytes
    manifest: Manifest


@dataclass(frozen=True)
class FetchedImage:
    """What one image put in the layout: ``fetch_image`` from a registry or ``save_from_engine`` from an engine.
    ``downloaded`` counts bytes that crossed the network."""

    locked: LockedImage
    manifest_digest: str
    ref_name: str
    blobs: tuple[Descriptor, ...]
    downloaded: int = 0
    digests: Mapping[str, FileDigest] = field(default_factory=dict)
    """Whole-file digests and chunk chains of the blobs this call wrote, hashed as they were written, by blob digest."""


class OciLayout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    @classmethod
    def create(cls, root: Path) -> OciLayout:
        layout = cls(root)
        layout.blobs.mkdir(parents=True, exist_ok=True)
        if not (root / "oci-layout").exists():
            atomic_write_bytes(root / "oci-layout", LAYOUT_FILE)
        if not (root / "index.json").exists():
            layout._write_index([])
        return layout

    def blob_path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise VerificationError(f"unsupported or malformed digest {digest!r}")
        return self.blobs / hexpart

    def has_blob(self, digest: str, size: int) -> bool:
        try:
            return self.blob_path(digest).stat().st_size == size
        except FileNotFoundError:
            return False

    @contextlib.contextmanager
    def staging(self, digest: str) -> Iterator[tuple[IO[bytes], Path]]:
        """A temp file beside the final blob; the caller renames it with ``commit`` once verified."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{digest[7:19]}.", suffix=".part", dir=self.blobs)
        path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh, path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def commit(self, tmp: Path, digest: str) -> None:
        tmp.chmod(0o644)
        tmp.replace(self.blob_path(digest))

    def put_verified_file(self, src: Path, digest: str, size: int) -> None:
        """Place an already-verified file (from the download cache): hard link when possible, else copy."""
        if self.has_blob(digest, size):
            return
        dst = self.blob_path(digest)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name[:12]}.{os.getpid()}.link")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        if tmp.stat().st_size != size:
            tmp.unlink()
            raise FetchError(f"cached blob {digest} has the wrong size", hint="delete the cache directory")
        tmp.replace(dst)

    def put_bytes(self, data: bytes) -> Descriptor:
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not self.has_blob(digest, len(data)):
            atomic_write_bytes(path, data)
        return Descriptor("", digest, len(data))

    def read_blob(self, digest: str, limit: int = 4 * 1024 * 1024) -> bytes:
        """Read a small blob (manifest, config) and check it against its digest."""
        path = self.blob_path(digest)
        try:
            data = read_capped(path, limit)
        except FileNotFoundError:
            raise VerificationError(f"{self.root}: blob {digest} is missing") from None
        except OSError as exc:
            raise VerificationError(f"{path}: unusable blob ({exc})") from None
        if sha256_digest(data) != digest:
            raise VerificationError(f"{path}: bytes do not match digest {digest}")
        return data

    # -- index --------------------------------------------------------------------------------------
    def read_index(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads(read_capped(self.root / "index.json", MAX_INDEX_BYTES))
            entries = doc["manifests"]
        except FileNotFoundError:
            raise VerificationError(f"{self.root}: not an OCI image layout (no index.json)") from None
        except OSError as exc:
            raise VerificationError(f"{self.root}/index.json: unusable ({exc})") from None
        except (ValueError, KeyError, TypeError):
            raise VerificationError(f"{self.root}/index.json: malformed") from None
        if not isinstance(entries, list):
            raise VerificationError(f"{self.root}/index.json: manifests is not a list")
        return [e for e in entries if isinstance(e, dict)]

    def _write_index(self, entries: list[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        atomic_write_bytes(self.root / "index.json", (json.dumps(doc, indent=2) + "\n").encode())

    def add_manifest(self, descriptor: Descriptor, name: str, config_digest: str) -> None:
        """Record the manifest under ``name`` (replacing an older entry with that name)."""
        annotations = {REF_NAME: name, CONTAINERD_NAME: name, AIRPACK_CONFIG: config_digest}
        entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size,
                           descriptor.platform, annotations).to_dict()
        kept = [e for e in self.read_index() if (e.get("annotations") or {}).get(REF_NAME) != name]
        self._write_index([*kept, entry])

    def find(self, locked: LockedImage) -> LayoutImage:
        """The layout's manifest for ``locked``; its manifest and config digests must match the lock."""
        name = ref_name(locked)
        for entry in self.read_index():
            if (entry.get("annotations") or {}).get(REF_NAME) != name:
                continue
            desc = Descriptor.from_dict(entry, f"{self.root}/index.json")
            if locked.digest and locked.source != "engine" and desc.digest != locked.digest:
                raise VerificationError(f"{name}: layout holds manifest {desc.digest}, lock says {locked.digest}")
            raw = self.read_blob(desc.digest)
            manifest = parse_manifest(raw, desc.media_type, name)
            if manifest.config.digest != locked.config_digest:
                raise VerificationError(
                    f"{name}: layout image config {manifest.config.digest} is not the locked "
                    f"{locked.config_digest}")
            return LayoutImage(desc, raw, manifest)
        raise VerificationError(f"{self.root}: no image named {name!r} in index.json")
