"""A verified bundle's images into an engine (``airpack load``) or an internal registry (``airpack push``, with the
model as a ModelPack artifact beside them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airpack.bundle_layout import IMAGES_DIR, MODEL_DIR
from airpack.errors import InstallError
from airpack.lock import Lock, LockedImage
from airpack.progress import Reporter, Silent
from airpack.verify import VerifiedBundle

if TYPE_CHECKING:
    from airpack.oci.modelpack import Artifact


def locked_images(verified: VerifiedBundle) -> list[LockedImage]:
    """The images the bundle's signed lock pins (the layout was verified with the rest of the bundle)."""
    return list(Lock.from_dict(verified.manifest.lock).images)


def load_images(verified: VerifiedBundle, client: Any, reporter: Reporter | None = None) -> list[str]:
    """Load every image into the engine; returns the airpack-owned tags. Image IDs are checked by the loader."""
    from airpack.oci.engine_load import load_into_engine  # noqa: PLC0415

    images = locked_images(verified)
    if not images:
        return []
    reporter = reporter or Silent()
    advance = reporter.task("loading images", sum(e.size for e in verified.manifest.files if e.kind == "images"))
    tags = load_into_engine(verified.path / IMAGES_DIR, images, client, progress=advance)
    reporter.done(advance)
    return tags


def original_tags(verified: VerifiedBundle) -> list[str]:
    """The source references the loader also tags (``docker images`` shows them by their usual names)."""
    from airpack.oci.reference import parse_reference  # noqa: PLC0415

    return [parse_reference(i.ref).familiar() for i in locked_images(verified) if i.tag]


def push_images(verified: VerifiedBundle, registry: str, reporter: Reporter | None = None) -> list[str]:
    """Push every image to ``registry`` (``HOST[:PORT][/PREFIX]``); returns ``host/repo@sha256:…`` for each."""
    from airpack.oci import push_layout  # noqa: PLC0415

    images = locked_images(verified)
    if not images:
        raise InstallError(f"{verified.manifest.name} {verified.manifest.version} carries no images to push")
    reporter = reporter or Silent()
    advance = reporter.task("pushing images", sum(e.size for e in verified.manifest.files if e.kind == "images"))
    refs = push_layout(verified.path / IMAGES_DIR, images, registry, progress=advance)
    reporter.done(advance)
    return refs


def model_artifact(verified: VerifiedBundle) -> Artifact:
    """The bundle's model as a ModelPack artifact (:mod:`airpack.oci.modelpack`), from the signed inventory."""
    from airpack.oci.modelpack import ModelFile, build_artifact, info_from_bundle  # noqa: PLC0415

    m = verified.manifest
    files = [ModelFile(e.path.removeprefix(f"{MODEL_DIR}/"), e.size, e.sha256) for e in m.files
             if e.path.startswith(f"{MODEL_DIR}/")]
    if not files:
        raise InstallError(f"{m.name} {m.version} carries no model files to push")
    return build_artifact(files, info_from_bundle(m.name, m.version, m.created, m.lock, m.plan))


def push_model(verified: VerifiedBundle, registry: str, reporter: Reporter | None = None) -> str:
    """Push the model as a ModelPack artifact to ``registry``/<bundle name>, tagged with the bundle version;
    returns ``host/prefix/name@sha256:…`` (the artifact's manifest digest)."""
    from airpack.oci.push import push_model as push  # noqa: PLC0415

    artifact = model_artifact(verified)
    reporter = reporter or Silent()
    advance = reporter.task("pushing model", sum(ly.file.size for ly in artifact.layers))
    ref: str = push(artifact, verified.path / MODEL_DIR, registry, verified.manifest.name,
                    verified.manifest.version, progress=advance)
    reporter.done(advance)
    return ref


def weights_params(verified: VerifiedBundle, target: Any, weights: str) -> dict[str, str]:
    """The host parameters that tell a Kubernetes target's manifests how the pods get the weights: the mode,
    the model artifact's digest (``image-volume``) and, for ``init-copy``, the weights image's (one hash pass
    over the model: its tar layers are named by their sha256). Empty for a target that takes no ``--weights``."""
    if "--weights" not in target.flags:
        return {}
    out = {"weights": weights, "model_digest": model_artifact(verified).manifest_descriptor.digest}
    if weights == "init-copy":
        out["weights_digest"] = weights_image(verified).manifest_digest  # noqa: F821 - i16w brings it
    return out
