"""Plan a model taken from a Hugging Face cache (``model.cache``) from the cached files themselves, with no network:
``config.json`` (checked against the lock), each safetensors header and the head of each GGUF file, read through
the cache's link rules (:class:`airpack.sources.hf_cache._Snapshot`). The planner then judges a cache source like
any other: the fit check and the quant choice at lock, and ``airpack plan`` offline.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from airpack.errors import FetchError, SourceError
from airpack.lock import LockedFile, LockedModel
from airpack.plan import ModelFacts, QuantCandidate, model_facts_from_headers
from airpack.plan.gguf_facts import read_gguf
from airpack.plan.safetensors_facts import read_safetensors_header
from airpack.sources._common import MAX_SMALL_FILE, check_locked
from airpack.sources.hf_cache import _Snapshot
from airpack.sources.hf_plan import gguf_groups
from airpack.spec import ModelSpec


class _Cached:
    """The locked commit of one cached repo: each locked file's real path, after the link check."""

    def __init__(self, model: LockedModel, cache: Path) -> None:
        repo, commit = check_locked(model, "hf-cache")
        self.model = model
        self.snap = _Snapshot(ModelSpec(repo=repo, revision=commit), cache)

    def path(self, f: LockedFile) -> Path:
        real, _ = self.snap.resolve(f.path)
        return real

    def config(self) -> dict[str, Any] | None:
        f = next((f for f in self.model.files if f.path == "config.json"), None)
        if f is None:
            return None
        real = self.path(f)
        if real.stat().st_size > MAX_SMALL_FILE:
            raise SourceError(f"model.cache: {self.snap.path / f.path} is too large for a config file")
        data = real.read_bytes()
        if hashlib.sha256(data).hexdigest() != f.sha256:
            raise FetchError(f"model.cache: {self.snap.path / f.path} changed since it was locked",
                             hint="run 'airpack lock' again")
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(f"model.cache: {self.snap.path / f.path}: not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise SourceError(f"model.cache: {self.snap.path / f.path}: expected a JSON object")
        return parsed

    def variant(self, config: dict[str, Any] | None, shards: list[LockedFile]) -> ModelFacts:
        return model_facts_from_headers(config, gguf_files=[read_gguf(self.path(f)) for f in shards],
                                        source=str(self.model.repo), files=[f.path for f in self.model.files])


def cache_model_facts(model: LockedModel, cache: Path) -> ModelFacts:
    """The model's own numbers for the planner, as :func:`airpack.sources.hf_plan.hub_model_facts` reads them
    from the Hub, here from the cache (the largest GGUF variant when several are selected)."""
    c = _Cached(model, cache)
    config = c.config()
    groups = gguf_groups(model)
    if groups:
        return c.variant(config, max(groups.values(), key=lambda fs: sum(f.size for f in fs)))
    headers = [read_safetensors_header(c.path(f)) for f in model.files if f.path.endswith(".safetensors")]
    if not headers:
        raise SourceError(f"{model.repo}: no safetensors or GGUF weights selected to plan from")
    return model_facts_from_headers(config, headers, source=str(model.repo), files=[f.path for f in model.files])


def cache_gguf_candidates(model: LockedModel, cache: Path) -> tuple[QuantCandidate, ...]:
    """One planner candidate per GGUF variant in the cached commit, each from its shards' heads."""
    c = _Cached(model, cache)
    config = c.config()
    return tuple(QuantCandidate(ref, c.variant(config, shards)) for ref, shards in gguf_groups(model).items())
