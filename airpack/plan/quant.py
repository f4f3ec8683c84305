"""Choosing which quantized variant to carry: the highest-quality one that fits the target at the requested context.

Quality is ranked by weight bytes: variants of one model with more bytes keep more bits per weight (Q6_K over
Q4_K_M, bf16 over FP8 over AWQ). A variant is eligible when its plan fits and no compatibility check fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from airpack.errors import CompatibilityError, SourceError
from airpack.plan.estimate import plan
from airpack.plan.facts import ModelFacts
from airpack.plan.gguf_facts import gguf_variants
from airpack.plan.inputs import model_facts_from_dir
from airpack.plan.models import Plan, PlanRequest


@dataclass(frozen=True)
class QuantCandidate:
    """One variant a repository offers. ``ref`` says where it lives for the caller: a GGUF file path, or a
    repository / branch such as ``TheBloke/X-GPTQ@gptq-4bit-32g-actorder_True``."""

    ref: str
    facts: ModelFacts

    @property
    def label(self) -> str:
        return self.facts.quantization.label


class QuantChoice(NamedTuple):
    """``chosen, reason = choose_quant(...)`` works; ``plan`` is the chosen variant's plan."""

    candidate: QuantCandidate
    reason: str
    plan: Plan


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _matches(candidate: QuantCandidate, want: str) -> bool:
    """'Q4_K_M' matches that GGUF type; 'awq'/'gptq'/'fp8' match the scheme; 'gptq-4bit-g32' matches the label."""
    w = _norm(want)
    q = candidate.facts.quantization
    return w in (_norm(q.label), _norm(q.scheme)) or (q.method is not None and w == _norm(q.method))


def _blocking(p: Plan) -> str:
    failed = [c for c in p.checks if c.status == "fail"]
    return "; ".join(f"{c.name}: {c.message}" for c in failed) or "does not fit"


def choose_quant(candidates: Sequence[QuantCandidate], req: PlanRequest, want: str = "auto") -> QuantChoice:
    """Pick the variant to carry. ``want`` is "auto" or a quant name ("Q4_K_M", "awq", "fp8", "bf16" ...).

    With a name, the best fitting variant among those matching it. Raises CompatibilityError when nothing
    matching fits (the message names what would), SourceError when no candidate matches the name at all.
    """
    if not candidates:
        raise SourceError("no quantized variants to choose from")
    pool = list(candidates)
    if want.lower() != "auto":
        pool = [c for c in candidates if _matches(c, want)]
        if not pool:
            offered = ", ".join(sorted({c.label for c in candidates}))
            raise SourceError(f"no variant matches quantization {want!r}", hint=f"available: {offered}")
    plans = [(c, plan(c.facts, req)) for c in pool]
    ranked = sorted(plans, key=lambda cp: (-cp[0].facts.weights_bytes, cp[0].ref))
    ok = [(c, p) for c, p in ranked if p.ok]
    if ok:
        chosen, chosen_plan = ok[0]
        skipped = [c.label for c, _ in ranked[: ranked.index((chosen, chosen_plan))]]
        why = f"; larger variants do not fit or cannot run: {', '.join(skipped)}" if skipped else ""
        kind = "requested" if want.lower() != "auto" else "highest-quality"
        reason = (
            f"{chosen.label} ({chosen.ref}) is the {kind} variant that fits: needs "
            f"{chosen_plan.per_gpu.required_bytes / 2**30:.2f} of {chosen_plan.per_gpu.available_bytes / 2**30:.2f} "
            f"GiB per device at {chosen_plan.context} tokens{why}"
        )
        return QuantChoice(chosen, reason, chosen_plan)
    smallest_c, smallest_p = ranked[-1]
    hint = None
    if want.lower() != "auto":
        others = [c for c, p in sorted(((c, plan(c.facts, req)) for c in candidates if c not in pool),
                                       key=lambda cp: -cp[0].facts.weights_bytes) if p.ok]  # fmt: skip
        if others:
            hint = f"{others[0].label} ({others[0].ref}) would fit"
    raise CompatibilityError(
        f"no {'' if want.lower() == 'auto' else want + ' '}variant fits the target: the smallest, "
        f"{smallest_c.label}, {_blocking(smallest_p)}",
        hint=hint,
    )


def gguf_candidates_from_dir(path: str | Path) -> tuple[QuantCandidate, ...]:
    """One candidate per GGUF variant in a directory (split shards grouped), for ``choose_quant``."""
    model_dir = Path(path)
    variants = gguf_variants(model_dir)
    if not variants:
        raise SourceError(f"{model_dir}: no GGUF files")
    return tuple(QuantCandidate(ref, model_facts_from_dir(model_dir, gguf_file=ref)) for ref in variants)
