"""``airpack plan`` for a Hub model (``model.repo`` without ``model.cache``): the planner needs the model's own
numbers, and for a Hub model those are on the Hub. ``plan`` lists the repo at its revision and reads
``config.json``, each safetensors header and each GGUF head with HTTP range requests (no weights). Without the
Hub it says so in one line: with ``HF_HUB_OFFLINE=1`` before any request, and on a network error with the two
ways to plan offline (a local folder, ``model.path``, or a Hugging Face cache, ``model.cache``).
"""

from __future__ import annotations

from airpack.errors import FetchError
from airpack.plan import Plan, PlanRequest, plan
from airpack.spec import Spec

OFFLINE_HINT = ("plan reads a Hub model's config and weight headers from the Hub (range requests, no weights): run "
                "it where the Hub can be reached, or plan from a local folder (model.path) or a Hugging Face cache "
                "(model.cache), which needs no network")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as huggingface_hub reads it."""
    from huggingface_hub import constants  # noqa: PLC0415

    return bool(constants.HF_HUB_OFFLINE)


def plan_hub(spec: Spec, req: PlanRequest) -> Plan:
    """Plan a Hub model from its metadata; a ``FetchError`` naming the Hub when it cannot be read."""
    from airpack.sources.hf import hub_errors, resolve_hub  # noqa: PLC0415
    from airpack.sources.hf_plan import hub_model_facts  # noqa: PLC0415

    repo = str(spec.model.repo)
    if hub_offline():
        raise FetchError(f"plan: {repo} is a Hub model and HF_HUB_OFFLINE is set", hint=OFFLINE_HINT)
    try:
        model = resolve_hub(spec.model)
        with hub_errors(repo, str(model.commit)):
            facts = hub_model_facts(model)
    except FetchError as exc:
        raise FetchError(f"plan: {exc.message}", hint=OFFLINE_HINT) from None
    return plan(facts, req)
