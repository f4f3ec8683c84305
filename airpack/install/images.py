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
    from airpack.oci.modelpack import Artifact, ModelFile
    from airpack.oci.weights_image import WeightsImage


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


def _model_files(verified: VerifiedBundle) -> list[ModelFile]:
    """The model files in the signed inventory, sorted by path (bytewise), relative to the model folder."""
    from airpack.oci.modelpack import ModelFile  # noqa: PLC0415

    m = verified.manifest
    files = [ModelFile(e.path.removeprefix(f"{MODEL_DIR}/"), e.size, e.sha256) for e in m.files
             if e.path.startswith(f"{MODEL_DIR}/")]
    if not files:
        raise InstallError(f"{m.name} {m.version} carries no model files to push")
    return sorted(files, key=lambda f: f.path.encode())


def model_artifact(verified: VerifiedBundle) -> Artifact:
    """The bundle's model as a ModelPack artifact (:mod:`airpack.oci.modelpack`), from the signed inventory."""
    from airpack.oci.modelpack import build_artifact, info_from_bundle  # noqa: PLC0415

    m = verified.manifest
    return build_artifact(_model_files(verified), info_from_bundle(m.name, m.version, m.created, m.lock, m.plan))


def runtime_image(verified: VerifiedBundle) -> LockedImage:
    """The lock's runtime image for the bundle's target platform (the first one when the lock names several)."""
    m = verified.manifest
    platform = str((m.spec.get("target") or {}).get("platform") or "linux/amd64")
    runtimes = [i for i in locked_images(verified) if i.role == "runtime"]
    chosen = next((i for i in runtimes if i.platform == platform), runtimes[0] if runtimes else None)
    if chosen is None:
        raise InstallError(f"{m.name} {m.version} carries no runtime image to put the weights on",
                           hint="the weights image needs the runtime image as its base")
    return chosen


def weights_image(verified: VerifiedBundle, reporter: Reporter | None = None, *,
                  workers: int | None = None) -> WeightsImage:
    """The weights image (:mod:`airpack.oci.weights_image`): the runtime image plus one tar layer per model
    file. Reads every model file once to hash its layer (checking its signed sha256 on the way); no network,
    so ``airpack render`` can name the image by the digest ``airpack push --weights-image`` will produce."""
    from airpack.oci.layout import OciLayout  # noqa: PLC0415
    from airpack.oci.weights_image import BaseImage, build_weights_image, layer_descriptors  # noqa: PLC0415

    m = verified.manifest
    locked = runtime_image(verified)
    layout = OciLayout(verified.path / IMAGES_DIR)
    found = layout.find(locked)
    base = BaseImage(locked.ref, found.descriptor.digest, found.raw, layout.read_blob(found.manifest.config.digest))
    files = _model_files(verified)
    reporter = reporter or Silent()
    advance = reporter.task("hashing weights layers", sum(f.size for f in files))
    layers = layer_descriptors(files, verified.path / MODEL_DIR, workers=workers, progress=advance)
    reporter.done(advance)
    return build_weights_image(base, files, layers, m.name, m.version, m.created)


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


def push_weights_image(verified: VerifiedBundle, registry: str, reporter: Reporter | None = None, *,
                       image: WeightsImage | None = None) -> str:
    """Push the weights image beside the model artifact (``registry``/<name>, tagged ``<version>-weights``):
    the runtime's layers mounted from its repository there (``push_images`` put them), each model file's tar
    layer streamed. Returns ``host/prefix/name@sha256:…``, the digest :func:`weights_image` computes."""
    from airpack.oci.push import push_weights_image as push  # noqa: PLC0415

    image = image or weights_image(verified, reporter)
    reporter = reporter or Silent()
    advance = reporter.task("pushing weights image", sum(ly.descriptor.size for ly in image.layers))
    ref: str = push(image, verified.path / IMAGES_DIR, verified.path / MODEL_DIR, registry, verified.manifest.name,
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
        out["weights_digest"] = weights_image(verified).manifest_descriptor.digest
    return out

