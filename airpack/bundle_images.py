"""The images of a bundle, build side: which references a spec names, locking them, and fetching them into the
bundle's OCI layout (``images/``). The registry protocol itself lives in ``airpack.oci``; the far side loads or
pushes a verified bundle's images with ``airpack.install.images``.

A reference written ``docker-daemon:NAME[:TAG]`` (skopeo's transport name) is taken from the local Docker
engine instead of a registry: for images built locally that were never pushed.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from airpack._fs import walk_tree
from airpack.bundle_layout import IMAGES_DIR
from airpack.errors import FetchError, SourceError
from airpack.hashing import FileDigest, hash_file
from airpack.lock import LockedImage
from airpack.progress import Reporter
from airpack.spec import Spec

ENGINE_PREFIX = "docker-daemon:"


def image_refs(spec: Spec) -> list[tuple[str, str]]:
    """``(reference, role)`` for the runtime image (the spec's, or the engine profile's default) and extras."""
    refs: list[tuple[str, str]] = []
    if spec.runtime is not None:
        ref = spec.runtime.image
        if ref is None:
            from airpack.profiles import get_profile  # noqa: PLC0415

            ref = get_profile(spec.runtime.engine).default_image
        refs.append((ref, "runtime"))
    refs.extend((r, "dependency") for r in spec.dependencies.images)
    return refs


def _docker_client() -> Any:
    import docker  # noqa: PLC0415 - only engine-sourced images need the docker SDK

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise SourceError(f"cannot reach the local Docker engine for a docker-daemon: image ({exc})") from None


def lock_images(spec: Spec) -> tuple[LockedImage, ...]:
    """Resolve every image to its manifest digest for the target platform (config digest for engine images)."""
    refs = image_refs(spec)
    if not refs:
        return ()
    from airpack.oci import resolve_image  # noqa: PLC0415
    from airpack.oci.engine_save import resolve_engine_image  # noqa: PLC0415

    out = []
    client = None
    for ref, role in refs:
        if ref.startswith(ENGINE_PREFIX):
            client = client or _docker_client()
            out.append(resolve_engine_image(client, ref[len(ENGINE_PREFIX):], spec.target.platform, role=role))
        else:
            out.append(resolve_image(ref, spec.target.platform, role=role))
    return tuple(out)


ZSTD_LAYERS = frozenset({"application/vnd.oci.image.layer.v1.tar+zstd",
                         "application/vnd.docker.image.rootfs.diff.tar.zstd"})


def image_checks(images: tuple[LockedImage, ...]) -> tuple[dict[str, str], ...]:
    """Findings about the locked images that the target host must satisfy, for the lock's ``checks``.

    zstd-compressed layers load only into Docker Engine 23 or newer (Debian 12's docker.io 20.10 refuses
    them): a warning at lock, where another image can still be chosen; ``airpack doctor`` checks the host.
    """
    out = []
    for image in images:
        zstd = sorted(ZSTD_LAYERS & set(image.extra.get("layerMediaTypes") or ()))
        if zstd:
            out.append({"name": "image-layers", "status": "warn",
                        "message": f"{image.ref} has zstd layers ({', '.join(zstd)}): the target needs Docker "
                                   "Engine 23+ or containerd to load it (docker.io 20.10 cannot); choose a gzip "
                                   "image if the host runs an older engine"})
    return tuple(out)


def fetch_all(images: tuple[LockedImage, ...], bundle: Path, *, cache_dir: Path, reporter: Reporter) -> tuple[
        dict[str, FileDigest], list[dict[str, Any]]]:
    """Fetch every locked image into ``bundle/images``; return each layout file's digests and image records."""
    from airpack.oci.engine import airpack_tag  # noqa: PLC0415
    from airpack.oci.fetch import fetch_image  # noqa: PLC0415

    layout = bundle / IMAGES_DIR
    records: list[dict[str, Any]] = []
    known: dict[str, FileDigest] = {}
    client = _docker_client() if any(i.source == "engine" for i in images) else None
    advance = reporter.task("fetching images", sum(i.size for i in images))
    for locked in images:
        fetched = fetch_image(locked, layout, cache_dir=cache_dir, progress=advance, engine=client)
        known.update(fetched.digests)
        records.append(locked.to_dict() | {"manifestDigest": fetched.manifest_digest, "refName": fetched.ref_name,
                                           "airpackTag": airpack_tag(locked)})
    reporter.done(advance)
    return _layout_digests(bundle, layout, known), records


def _layout_digests(bundle: Path, layout: Path, known: dict[str, FileDigest]) -> dict[str, FileDigest]:
    """Every layout file's digests for ``SHA256SUMS``. Blobs written by this build were hashed (digest and chunk
    chain) while they were written; only the rest is read again: ``index.json``, ``oci-layout``, small
    manifests and configs, and blobs an interrupted earlier run left in the staging layout, which must still
    hash to their names."""
    digests: dict[str, FileDigest] = {}
    blobs = layout / "blobs" / "sha256"
    for rel, mode in sorted(walk_tree(layout)):  # iterative, links not followed
        path = layout / rel
        if not stat.S_ISREG(mode):
            continue
        if path.name.startswith("."):
            path.unlink()  # a temporary file of a run that was killed (see OciLayout.staging): never bundled
            continue
        name = "sha256:" + path.name if path.parent == blobs else None
        digest = known.get(name) if name else None
        if digest is None:
            digest = hash_file(path)
            if name and "sha256:" + digest.sha256 != name:
                raise FetchError(f"{path}: bytes hash to sha256:{digest.sha256}, not its name",
                                 hint="an earlier interrupted build left a damaged blob; delete the staging "
                                      "folder and build again")
        digests[path.relative_to(bundle).as_posix()] = digest
    return digests
