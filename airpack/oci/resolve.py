"""Lock time: pin an image reference to manifest and config digests, daemonless.

A tag is resolved to its manifest (or the platform's manifest inside an index); the config blob is fetched
(small) to record the config digest, which is the image ID an engine will report after ``docker load``.
"""

from __future__ import annotations

from typing import Any

from airpack.errors import FetchError, SourceError
from airpack.lock import LockedImage
from airpack.oci.auth import RegistryOptions
from airpack.oci.manifest import (
    INDEXES,
    Manifest,
    config_platform,
    parse_index,
    parse_manifest,
    select_platform,
)
from airpack.oci.reference import Reference, parse_platform, parse_reference
from airpack.oci.registry import RegistryClient

MAX_CONFIG_BYTES = 16 * 1024 * 1024


def resolve_image(
    ref: str, platform: str = "linux/amd64", *, options: RegistryOptions | None = None,
    role: str = "runtime", client: RegistryClient | None = None,
) -> LockedImage:
    """Resolve ``ref`` (tag or digest) to a ``LockedImage`` for ``platform``.

    ``extra`` records ``indexDigest`` (when the reference named a multi-platform index) and
    ``layerMediaTypes`` so lock/doctor can warn about layers an old engine cannot load.
    Unknown image or tag, or no image for the platform: ``SourceError``.
    """
    parsed = parse_reference(ref)
    plat = parse_platform(platform)
    own = client is None
    reg = client or RegistryClient(parsed.registry, options)
    try:
        data, media_type, digest = reg.get_manifest(parsed.repository, parsed.reference, ref)
        extra: dict[str, Any] = {}
        if media_type in INDEXES:
            entry = select_platform(parse_index(data, ref), plat, ref)
            extra["indexDigest"] = digest
            data, media_type, digest = reg.get_manifest(parsed.repository, entry.digest, f"{ref} ({plat})")
            if media_type in INDEXES:
                raise SourceError(f"{ref}: nested image index is not supported")
        manifest = parse_manifest(data, media_type, ref)
        config = reg.get_blob_bytes(parsed.repository, manifest.config.digest, MAX_CONFIG_BYTES, ref)
        os_, arch, variant = config_platform(config)
        if os_ and arch and not plat.matches(os_, arch, variant or plat.variant):  # configs often omit it
            found = "/".join(p for p in (os_, arch, variant) if p)
            raise SourceError(f"{ref}: the image is for {found}, the target is {plat}",
                              hint="choose a tag built for the target platform")
    finally:
        if own:
            reg.close()
    return _locked(parsed, digest, manifest, plat_text=str(plat), role=role, extra=extra, data_len=len(data))


def _locked(parsed: Reference, digest: str, manifest: Manifest, *, plat_text: str, role: str,
            extra: dict[str, Any], data_len: int) -> LockedImage:
    extra["layerMediaTypes"] = sorted({layer.media_type for layer in manifest.layers})
    return LockedImage(
        ref=str(parsed), repository=parsed.name, digest=digest, config_digest=manifest.config.digest,
        platform=plat_text, role=role, source="registry", tag=parsed.tag,
        size=data_len + sum(b.size for b in manifest.blobs), media_type=manifest.media_type, extra=extra,
    )


def check_tag_unmoved(locked: LockedImage, client: RegistryClient) -> None:
    """At build time: the locked tag must still name what was locked (a moved tag is an error)."""
    if not locked.tag:
        return
    parsed = parse_reference(locked.ref)
    pinned = str(locked.extra.get("indexDigest") or locked.digest)
    now = client.head_manifest(parsed.repository, locked.tag)
    if now is None:
        data = None
        try:
            data = client.get_manifest(parsed.repository, locked.tag, locked.ref)
        except SourceError:
            raise SourceError(f"{locked.ref}: the tag no longer exists in the registry",
                              hint="run 'airpack lock' again to pin what the tag names now") from None
        now = data[2]
    if now != pinned:
        raise SourceError(
            f"{locked.ref}: the tag moved since lock ({pinned} → {now})",
            hint="run 'airpack lock' again to accept the new image, or lock by digest",
        )


def repository_path(locked: LockedImage) -> str:
    """The repository without its registry host (``library/busybox``)."""
    parsed = parse_reference(locked.ref)
    return parsed.repository


__all__ = ["FetchError", "check_tag_unmoved", "repository_path", "resolve_image"]
