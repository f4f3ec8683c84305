"""``airpack lock``: resolve a spec into a ``Lock`` — every file, commit and image pinned — without
downloading weights. The planner's checks run before weights are hashed or images resolved, so a model that
cannot fit or run on the target is refused before anything crosses the air gap.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airpack.lock import Lock, LockedFile, LockedModel, lock_local
from airpack.spec import Spec
from airpack.tool import PYTHONS, WheelSource

if TYPE_CHECKING:
    from airpack.plan.facts import ModelFacts


def lock_hub(spec: Spec) -> LockedModel:
    """The Hub (or Hugging Face cache) half of locking: commit, files, sizes and sha256."""
    from airpack.sources import hf  # noqa: PLC0415 - only Hub specs need huggingface_hub

    if spec.hf_cache_dir is not None:
        return hf.lock_from_hf_cache(spec.model, spec.hf_cache_dir)
    return hf.resolve_hub(spec.model)


def _hash_local(spec: Spec, model: LockedModel) -> LockedModel:
    from airpack.hashing import hash_file  # noqa: PLC0415

    folder = spec.model_dir
    assert folder is not None  # noqa: S101 - a local model has a folder
    files = []
    for f in model.files:
        d = hash_file(folder / f.path)
        files.append(LockedFile(f.path, d.size, d.sha256))
    return replace(model, files=tuple(files))


def resolve(spec: Spec, *, cache_dir: Path, tool: WheelSource | None = None) -> Lock:
    """Pin everything the spec names. Raises ``SourceError``/``CompatibilityError`` with one clear line.

    With ``tool``, also the wheels the bundle's ``tool/`` carries, fetched from that source (airpack.tool)."""
    from airpack.bundle_images import image_checks, lock_images  # noqa: PLC0415
    from airpack.plan.spec import (  # noqa: PLC0415
        cache_facts,
        choose_local_quant,
        keep_branch_quant,
        keep_cache_quant,
        keep_quant,
        local_facts,
        size_only,
        verdict,
    )

    plan: dict[str, Any] | None = None
    facts: ModelFacts | None = None
    checks: tuple[dict[str, Any], ...] = ()
    if spec.model.path:
        # sizes and headers first (no hashing), so a model that cannot fit is refused at once
        model = choose_local_quant(spec, lock_local(spec, digest_of=size_only))
        if spec.runtime is not None:
            facts = local_facts(spec, model)
            plan, checks = verdict(spec, facts)
        model = _hash_local(spec, model)
    else:
        model = lock_hub(spec)
        if spec.model.cache:  # judged like any other source, from the cached files
            model = keep_cache_quant(spec, model)
            if spec.runtime is not None:
                facts = cache_facts(spec, model)
                plan, checks = verdict(spec, facts)
        else:
            from airpack.sources import hf_plan  # noqa: PLC0415

            if spec.model.quant and len(hf_plan.gguf_groups(model)) > 0:
                model = keep_quant(spec, model, hf_plan.hub_gguf_candidates(model))
            elif spec.model.quant:
                model = keep_branch_quant(spec, model)
            if spec.runtime is not None:
                facts = hf_plan.hub_model_facts(model)
                plan, checks = verdict(spec, facts)
    if spec.model.signature_key:  # the publisher's OMS signature (model.signature), checked against the lock
        from airpack.attest.source import check_source_signature  # noqa: PLC0415

        checks += (check_source_signature(spec, model),)
    images = lock_images(spec)
    locked_tool = None
    if tool is not None:
        from airpack.tool.wheels import resolve_tool  # noqa: PLC0415 - only a build with the tool runs pip

        locked_tool = resolve_tool(spec.target.platform, spec.target.python or PYTHONS, tool, cache_dir)
    return Lock(spec_digest=spec.digest(), model=model, images=images, plan=plan,
                facts=facts.summary() if facts is not None else None,
                checks=checks + image_checks(images), tool=locked_tool)
