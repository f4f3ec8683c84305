"""Deployment files for a bundle: a ``DeployContext`` from the spec, lock and fetched images, rendered by
``airpack.render`` into the bundle's ``deploy/`` (stage 1; install substitutes the host parameters)."""

from __future__ import annotations

from typing import Any

from airpack.errors import BuildError
from airpack.lock import Lock
from airpack.oci.reference import site_path
from airpack.profiles import get_profile
from airpack.profiles.context import DeployContext
from airpack.profiles.launch import CustomEngine
from airpack.render import render_bundle_deploy
from airpack.spec import Spec


def runtime_image(images: list[dict[str, Any]]) -> dict[str, Any]:
    for image in images:
        if image.get("role") == "runtime":
            return image
    raise BuildError("the spec deploys a runtime but the bundle carries no runtime image")


def deploy_context(spec: Spec, lock: Lock, images: list[dict[str, Any]]) -> DeployContext:
    """Everything the templates need, from the lock (never from the build machine)."""
    rt = spec.runtime
    assert rt is not None  # noqa: S101 - spec validation: deploy needs a runtime
    image = runtime_image(images)
    files = tuple(f.path for f in lock.model.files)
    ggufs = [f for f in lock.model.files if f.path.endswith(".gguf")]
    main_gguf = max(ggufs, key=lambda f: f.size).path if ggufs else None
    custom = None
    if rt.engine == "custom":
        assert rt.port is not None and rt.health is not None  # noqa: S101 - validated in spec.py
        custom = CustomEngine(command=rt.command, port=rt.port, health_path=rt.health)
    return DeployContext(
        name=spec.name, version=spec.version, profile=get_profile(rt.engine),
        # The image ID (the signed config digest), never the mutable airpack.local tag: what runs is what was
        # verified, as with the docker target.
        image_local=str(image["configDigest"]),
        image_registry=f"{site_path(image['repository'])}@{image['manifestDigest']}",
        model_files=files, served_name=rt.served_name or spec.name, gpus=spec.target.gpus, main_gguf=main_gguf,
        context_length=rt.context, tensor_parallel=rt.tensor_parallel, memory_fraction=rt.memory_fraction,
        quantization=(lock.model.quant or {}).get("method") if lock.model.quant else None,
        extra_args=rt.args, extra_env=rt.env, custom=custom, model_bytes=lock.model.total_size,
        model_sha256=tuple(f.sha256 for f in lock.model.files), replicas=spec.target.replicas,
        kubernetes=spec.kubernetes,
    )


def render_for_bundle(spec: Spec, lock: Lock, images: list[dict[str, Any]]) -> dict[str, bytes]:
    """``deploy/``-relative path → bytes, for every deploy target the spec names."""
    return render_bundle_deploy(deploy_context(spec, lock, images), spec.deploy)
