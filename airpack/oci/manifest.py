"""Manifests and indexes (OCI and docker v2 schema2), parsed from their exact bytes.

The bytes are what the digest covers, so callers keep them and only read fields through these helpers;
a manifest is never re-serialised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from airpack.errors import SourceError
from airpack.oci.reference import Platform

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*IMAGE_MANIFESTS, *INDEXES))
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the distribution spec's own limit


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Descriptor:
        try:
            digest, size = str(d["digest"]), int(d["size"])
        except (KeyError, TypeError, ValueError):
            raise SourceError(f"{where}: descriptor without a digest or size") from None
        if not digest.startswith("sha256:") or len(digest) != 71 or size < 0:
            raise SourceError(f"{where}: unsupported digest {digest!r} (only sha256 is supported)")
        return cls(str(d.get("mediaType", "")), digest, size, d.get("platform"), d.get("annotations"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest: its media type, config and layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)


def _load(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_MANIFEST_BYTES:
        raise SourceError(f"{where}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SourceError(f"{where}: manifest is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{where}: manifest is not a JSON object")
    return doc


def media_type_of(data: bytes, header: str | None, where: str) -> str:
    """The manifest's media type: its ``mediaType`` field, else the Content-Type, else sniffed."""
    doc = _load(data, where)
    mt = doc.get("mediaType") or (header or "").split(";")[0].strip()
    if mt in (*IMAGE_MANIFESTS, *INDEXES):
        return str(mt)
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    raise SourceError(f"{where}: unsupported manifest type {mt!r}",
                      hint="docker v2 schema2 and OCI manifests are supported; schema1 is not")


def parse_manifest(data: bytes, media_type: str, where: str) -> Manifest:
    doc = _load(data, where)
    if media_type not in IMAGE_MANIFESTS:
        raise SourceError(f"{where}: {media_type!r} is not an image manifest")
    try:
        config = Descriptor.from_dict(doc["config"], f"{where} config")
        layers = tuple(Descriptor.from_dict(x, f"{where} layer {i}") for i, x in enumerate(doc["layers"]))
    except (KeyError, TypeError):
        raise SourceError(f"{where}: manifest lacks config or layers") from None
    return Manifest(media_type, config, layers)


def parse_index(data: bytes, where: str) -> tuple[Descriptor, ...]:
    doc = _load(data, where)
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise SourceError(f"{where}: index without a manifests list")
    return tuple(Descriptor.from_dict(x, f"{where} manifests[{i}]") for i, x in enumerate(entries))


def select_platform(entries: tuple[Descriptor, ...], platform: Platform, where: str) -> Descriptor:
    """The index entry for ``platform``; attestation entries (``unknown/unknown``) never match."""
    candidates = [
        e for e in entries
        if e.media_type in (*IMAGE_MANIFESTS, "") and e.platform
        and platform.matches(e.platform.get("os"), e.platform.get("architecture"), e.platform.get("variant"))
    ]
    if not candidates:
        offered = sorted({
            "/".join(str(p) for p in (e.platform.get("os"), e.platform.get("architecture"),
                                      e.platform.get("variant")) if p)
            for e in entries if e.platform
        })
        raise SourceError(f"{where}: no image for platform {platform}",
                          hint=f"the index offers: {', '.join(offered) or 'nothing'}")
    # Several matching variants (arm/v6, arm/v7 when none asked): the first, as docker picks.
    return candidates[0]


def config_platform(config: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        doc = json.loads(config)
    except ValueError:
        return None, None, None
    if not isinstance(doc, dict):
        return None, None, None
    return doc.get("os"), doc.get("architecture"), doc.get("variant")
