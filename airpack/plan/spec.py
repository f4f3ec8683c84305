"""The planner applied to a spec: builds the ``PlanRequest`` from the spec's target and runtime (with command-line
overrides), reads the model's own numbers without downloading weights, and picks a quantization.

Used by ``airpack plan`` and by ``airpack lock``, which refuses a model that cannot fit or run on the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airpack.errors import CompatibilityError, SourceError
from airpack.lock import LockedModel
from airpack.plan import (
    Check,
    GpuInfo,
    ModelFacts,
    Plan,
    PlanRequest,
    QuantCandidate,
    choose_quant,
    compatibility_checks,
    gguf_candidates_from_dir,
    lookup_gpu,
    model_facts_from_dir,
    plan,
)
from airpack.plan.gpus import GIB
from airpack.selection import Excluded
from airpack.spec import Spec


@dataclass(frozen=True)
class Overrides:
    """``airpack plan`` options that replace the spec's values."""

    gpu: str | None = None
    vram_gib: float | None = None
    gpus: int | None = None
    context: int | None = None
    concurrency: int | None = None


UNSIZED = 1 << 50  # stands in for unknown memory where only the compatibility checks are wanted


def memory_known(spec: Spec, o: Overrides | None = None) -> bool:
    """Whether the target's memory is known: an explicit size, or a GPU name for a GPU target."""
    o = o or Overrides()
    gpus = o.gpus if o.gpus is not None else (1 if o.gpu and spec.target.gpus == 0 else spec.target.gpus)
    vram = o.vram_gib if o.vram_gib is not None else spec.target.vram_gib
    return vram is not None or (gpus > 0 and bool(o.gpu or spec.target.gpu))


def _gpu(name: str, *, from_flag: bool) -> GpuInfo:
    """The GPU's table entry; an unknown name says where it came from and what to give instead."""
    try:
        return lookup_gpu(name)
    except CompatibilityError as exc:
        if from_flag:
            raise CompatibilityError(f"--gpu: {exc.message}", hint="or pass --vram GIB for the memory per GPU") \
                from None
        raise CompatibilityError(f"target.gpu: {exc.message}",
                                 hint="or set target.vram (GiB per GPU) in the spec instead") from None


def plan_request(spec: Spec, o: Overrides | None = None) -> PlanRequest:
    """The target as the planner sees it. ``gpus: 0`` plans against host RAM given as ``target.vram``;
    with no size known the request carries ``UNSIZED`` memory (good for the compatibility checks only)."""
    o = o or Overrides()
    t, rt = spec.target, spec.runtime
    vram = o.vram_gib if o.vram_gib is not None else t.vram_gib
    if not memory_known(spec, o):
        vram = UNSIZED / GIB
    gpu_name = o.gpu or t.gpu
    gpus = o.gpus if o.gpus is not None else t.gpus
    if o.gpu and o.gpus is None and gpus == 0:
        gpus = 1  # naming a GPU on the command line means planning for one
    return PlanRequest(
        engine=rt.engine if rt is not None and rt.engine != "custom" else None,
        gpus=gpus,
        gpu=_gpu(gpu_name, from_flag=bool(o.gpu)) if gpu_name else None,
        vram_bytes_per_gpu=int(vram * GIB) if vram is not None else None,
        context=o.context if o.context is not None else (rt.context if rt else None),
        concurrency=o.concurrency or (rt.concurrency if rt and rt.concurrency else 1),
        tensor_parallel=rt.tensor_parallel if rt else None,
        memory_fraction=rt.memory_fraction if rt else None,
        driver=t.driver,
    )


def _ggufs(model: LockedModel) -> list[str]:
    return [f.path for f in model.files if f.path.endswith(".gguf")]


def local_facts(spec: Spec, model: LockedModel) -> ModelFacts:
    """A local-folder model's own numbers (headers only; the largest GGUF when there are several)."""
    folder = spec.model_dir
    assert folder is not None  # noqa: S101 - a local model has a folder
    ggufs = _ggufs(model)
    return model_facts_from_dir(folder, gguf_file=max(ggufs, key=lambda p: (folder / p).stat().st_size)
                                if ggufs else None)


def plan_local(spec: Spec, model: LockedModel, o: Overrides | None = None) -> Plan | None:
    """Plan a local-folder model from its headers; None when the target's memory is unknown."""
    if spec.model_dir is None or not memory_known(spec, o):
        return None
    return plan(local_facts(spec, model), plan_request(spec, o))


def _check_dicts(checks: tuple[Check, ...] | list[Check]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": c.name, "status": c.status, "message": c.message} for c in checks)


def verdict(spec: Spec, facts: ModelFacts) -> tuple[dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    """What ``lock`` records: the plan (when the target's memory is known) and the checks. Any failed check is
    a ``CompatibilityError``: nothing is downloaded for a model that cannot fit or run."""
    if spec.runtime is None:
        return None, ()
    req = plan_request(spec)
    if memory_known(spec):
        result = plan(facts, req)
        enforce(result)
        return result.to_dict(), _check_dicts(result.checks)
    checks = compatibility_checks(facts, req)
    _raise_failed(list(checks))
    note = Check("fits", "warn", "memory not planned: give target.gpu or target.vram (host RAM when gpus is 0)")
    return None, _check_dicts([*checks, note])


def choose_local_quant(spec: Spec, model: LockedModel) -> LockedModel:
    """``model.quant`` for a local folder: see ``keep_quant``."""
    folder = spec.model_dir
    if not spec.model.quant or folder is None or len(_ggufs(model)) == 0:
        return model
    return keep_quant(spec, model, gguf_candidates_from_dir(folder))


def keep_quant(spec: Spec, model: LockedModel, candidates: tuple[QuantCandidate, ...]) -> LockedModel:
    """Keep the one GGUF variant that fits (``auto``: the highest-quality one) and record why in the lock."""
    want = spec.model.quant
    assert want  # noqa: S101 - callers check
    req = plan_request(spec)  # memory unknown: UNSIZED, so the ranking is by quality alone
    choice = choose_quant(candidates, req, want)
    chosen = choice.candidate.ref
    stem = re.sub(r"-\d{5}-of-\d{5}\.gguf$", "", chosen)
    keep = tuple(f for f in model.files if not f.path.endswith(".gguf") or f.path.startswith(stem))
    dropped = tuple(Excluded(f.path, f"model.quant: {choice.candidate.label} chosen instead")
                    for f in model.files if f not in keep)
    return replace(model, files=keep, excluded=model.excluded + dropped,
                   quant={"want": want, "chosen": choice.candidate.label, "file": chosen, "reason": choice.reason})


def keep_branch_quant(spec: Spec, model: LockedModel) -> LockedModel:
    """``model.quant`` for a Hub repo whose variants are branches (GPTQ/AWQ/FP8 checkpoints): read each
    branch's config and safetensors headers, choose as ``keep_quant`` does, and lock the chosen branch at the
    commit that was measured. A revision that is not a branch (a tag or a commit) is the only candidate."""
    from airpack.sources import hf, hf_variants  # noqa: PLC0415 - only Hub specs need huggingface_hub

    want, repo = spec.model.quant, model.repo
    assert want and repo and model.commit  # noqa: S101 - callers check; a Hub lock has both
    branches = hf_variants.hub_branches(repo)
    if spec.model.revision not in branches:
        branches = {spec.model.revision: model.commit}
    candidates = hf_variants.hub_branch_candidates(repo, branches, include=spec.model.files,
                                                   exclude=spec.model.exclude)
    if not candidates:
        raise CompatibilityError(f"model.quant: no branch of {repo} holds a safetensors checkpoint to choose from",
                                 hint="remove model.quant, or choose a repo that publishes its variants")
    try:
        choice = choose_quant(candidates, plan_request(spec), want)
    except SourceError:  # nothing matches the name: say which branch holds what
        offered = ", ".join(f"{c.label} ({hf_variants.branch_of(c.ref)})" for c in candidates)
        raise SourceError(f"model.quant: no branch of {repo} holds a {want!r} variant",
                          hint=f"available: {offered}") from None
    branch = hf_variants.branch_of(choice.candidate.ref)
    commit = branches[branch]
    locked = model if commit == model.commit else hf.resolve_hub(replace(spec.model, revision=commit))
    return replace(locked, revision=branch, quant={"want": want, "chosen": choice.candidate.label,
                                                   "branch": branch, "reason": choice.reason})


def cache_facts(spec: Spec, model: LockedModel) -> ModelFacts:
    """A ``model.cache`` model's own numbers, read from the cached files (no network)."""
    from airpack.sources.hf_cache_plan import cache_model_facts  # noqa: PLC0415

    assert spec.hf_cache_dir is not None  # noqa: S101 - a cache spec has one
    return cache_model_facts(model, spec.hf_cache_dir)


def keep_cache_quant(spec: Spec, model: LockedModel) -> LockedModel:
    """``model.quant`` for a ``model.cache`` model, judged like any other source: GGUF variants in the cached
    commit as ``keep_quant`` does; a safetensors checkpoint is the one candidate, which must match and fit."""
    from airpack.sources.hf_cache_plan import cache_gguf_candidates  # noqa: PLC0415
    from airpack.sources.hf_plan import gguf_groups  # noqa: PLC0415

    want, cache = spec.model.quant, spec.hf_cache_dir
    if not want or cache is None:
        return model
    if gguf_groups(model):
        return keep_quant(spec, model, cache_gguf_candidates(model, cache))
    only = QuantCandidate(f"{model.repo}@{model.revision}", cache_facts(spec, model))
    choice = choose_quant((only,), plan_request(spec), want)
    return replace(model, quant={"want": want, "chosen": choice.candidate.label, "reason": choice.reason})


def enforce(result: Plan) -> None:
    """Lock refuses a model that will not fit or run: exit 2 with what failed and what would fit instead."""
    _raise_failed(list(result.checks))


def _raise_failed(checks: list[Check]) -> None:
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise CompatibilityError("; ".join(f"{c.name}: {c.message}" for c in failed),
                                 hint="see 'airpack plan' for the numbers")


def plan_spec(spec: Spec, o: Overrides | None = None) -> Plan | None:
    """``airpack plan``: a local folder or a Hugging Face cache is read where it is (no network); a Hub model
    needs the Hub, for range reads of its metadata. None when the target's memory is unknown."""
    from airpack.lock import lock_local  # noqa: PLC0415

    if not memory_known(spec, o):
        return None
    if spec.model.cache:  # a local source: read from the cache, never the network
        from airpack.sources.hf_cache import lock_from_hf_cache  # noqa: PLC0415

        assert spec.hf_cache_dir is not None  # noqa: S101 - model.cache is set
        model = keep_cache_quant(spec, lock_from_hf_cache(spec.model, spec.hf_cache_dir))
        return plan(cache_facts(spec, model), plan_request(spec, o))
    if spec.model.path is None:
        from airpack.plan.hub import plan_hub  # noqa: PLC0415

        return plan_hub(spec, plan_request(spec, o))
    model = choose_local_quant(spec, lock_local(spec, digest_of=size_only))
    return plan_local(spec, model, o)


def size_only(path: Path) -> object:
    """For planning, file sizes are enough: skip hashing the weights."""
    from airpack.hashing import FileDigest  # noqa: PLC0415

    return FileDigest(path.stat().st_size, "0" * 64)
