"""``airpack lock``: resolve a spec into a ``Lock`` — every file, commit and image pinned — without
downloading weights. The planner's checks run first, so a model that cannot fit or run on the target is
refused before anything is hashed, downloaded or crosses the air gap.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from airpack.lock import Lock, LockedFile, LockedModel, lock_local
from airpack.spec import Spec


def _lock_hub(spec: Spec) -> LockedModel:
    from airpack.sources import hf  # noqa: PLC0415 - only Hub specs need huggingface_hub

    if spec.model.cache:
        return hf.lock_from_hf_cache(spec.model, spec.base_dir / spec.model.cache)
    return hf.resolve_hub(spec.model)


def _plan_local(spec: Spec) -> tuple[LockedModel, dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    """Select files, choose the quantization and plan from sizes and headers alone (no hashing yet)."""
    from airpack import planning  # noqa: PLC0415
    from airpack.plan import compatibility_checks, model_facts_from_dir  # noqa: PLC0415

    model = planning.choose_local_quant(spec, lock_local(spec, digest_of=planning.size_only))
    if spec.runtime is None:
        return model, None, ()
    plan = planning.plan_local(spec, model)
    if plan is not None:
        planning.enforce(plan)
        return model, plan.to_dict(), tuple({"name": c.name, "status": c.status, "message": c.message}
                                            for c in plan.checks)
    folder = spec.model_dir
    assert folder is not None  # noqa: S101 - a local model has a folder
    ggufs = [f.path for f in model.files if f.path.endswith(".gguf")]
    facts = model_facts_from_dir(folder, gguf_file=max(ggufs, key=lambda p: (folder / p).stat().st_size)
                                 if ggufs else None)
    checks = compatibility_checks(facts, planning.plan_request(spec))
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        from airpack.errors import CompatibilityError  # noqa: PLC0415

        raise CompatibilityError("; ".join(f"{c.name}: {c.message}" for c in failed))
    note = {"name": "fits", "status": "warn",
            "message": "memory not planned: give target.gpu or target.vram (host RAM when gpus is 0)"}
    return model, None, (*({"name": c.name, "status": c.status, "message": c.message} for c in checks), note)


def _hash_local(spec: Spec, model: LockedModel) -> LockedModel:
    from airpack.hashing import hash_file  # noqa: PLC0415

    folder = spec.model_dir
    assert folder is not None  # noqa: S101
    files = []
    for f in model.files:
        d = hash_file(folder / f.path)
        files.append(LockedFile(f.path, d.size, d.sha256))
    return replace(model, files=tuple(files))


def resolve(spec: Spec, *, cache_dir: Path) -> Lock:
    """Pin everything the spec names. Raises ``SourceError``/``CompatibilityError`` with one clear line."""
    from airpack.images import lock_images  # noqa: PLC0415

    plan: dict[str, Any] | None = None
    checks: tuple[dict[str, Any], ...] = ()
    if spec.model.path:
        model, plan, checks = _plan_local(spec)
        model = _hash_local(spec, model)
    else:
        model = _lock_hub(spec)
    images = lock_images(spec)
    return Lock(spec_digest=spec.digest(), model=model, images=images, plan=plan, checks=checks)
