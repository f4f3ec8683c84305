"""``airpack lock``: resolve a spec into a ``Lock`` — every file, commit and image pinned — without
downloading weights. The planner's checks run here too, so a model that cannot fit or run on the target
is refused before anything crosses the air gap.
"""

from __future__ import annotations

from pathlib import Path

from airpack.lock import Lock, LockedModel, lock_local
from airpack.spec import Spec


def _lock_model(spec: Spec) -> LockedModel:
    if spec.model.path:
        return lock_local(spec)
    from airpack.sources import hf  # noqa: PLC0415 - only Hub specs need huggingface_hub

    if spec.model.cache:
        return hf.lock_from_hf_cache(spec.model, spec.base_dir / spec.model.cache)
    return hf.resolve_hub(spec.model)


def resolve(spec: Spec, *, cache_dir: Path) -> Lock:
    """Pin everything the spec names. Raises ``SourceError``/``CompatibilityError`` with one clear line."""
    from airpack.images import lock_images  # noqa: PLC0415

    model = _lock_model(spec)
    images = lock_images(spec)
    return Lock(spec_digest=spec.digest(), model=model, images=images)
