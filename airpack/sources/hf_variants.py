"""Quantized variants published as git branches of one Hub repo (TheBloke's ``main`` = GPTQ 4-bit 128g,
``gptq-4bit-32g-actorder_True``, ``gptq-8bit-128g-actorder_True`` ...): list the branches, and read each
branch's ``config.json`` and safetensors headers with HTTP range requests, so ``model.quant`` can choose one
without downloading any weights.

Every read is made at the commit the branch pointed to when it was listed, so the variant that is chosen and
then locked is the one that was measured, even if the branch moves meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile

from airpack.errors import FetchError, SourceError
from airpack.lock import LockedFile, LockedModel
from airpack.plan import QuantCandidate, model_facts_from_headers
from airpack.selection import select_files
from airpack.sources._common import HEX40, MAX_SMALL_FILE
from airpack.sources._store import git_blob_id
from airpack.sources.hf import hub_errors
from airpack.sources.hf_plan import _Reader, _safetensors_header


def hub_branches(repo: str, *, endpoint: str | None = None, token: str | None = None) -> dict[str, str]:
    """The repo's branches and the commit each points to now (tags and pull requests are not variants)."""
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo, "refs"):
        refs = api.list_repo_refs(repo)
    return {b.name: b.target_commit for b in refs.branches if HEX40.match(b.target_commit)}


def branch_of(ref: str) -> str:
    """The branch in a candidate's ``ref`` (``repo@branch``)."""
    return ref.split("@", 1)[1]


def _config(r: _Reader, entry: RepoFile, where: str) -> dict[str, Any]:
    if entry.size > MAX_SMALL_FILE:
        raise SourceError(f"{where}: config.json is {entry.size} bytes, too large to be a config")
    data = r.get(entry.path)
    if entry.lfs is None and git_blob_id(data) != entry.blob_id:
        raise FetchError(f"{where}: config.json: the bytes served do not match the git blob id the Hub lists",
                         hint="try again later; if it persists, the endpoint is serving altered content")
    try:
        parsed = json.loads(data)
    except ValueError:
        raise SourceError(f"{where}: config.json is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise SourceError(f"{where}: config.json is not a JSON object")
    return parsed


def _candidate(api: HfApi, repo: str, branch: str, commit: str, include: Sequence[str],
               exclude: Sequence[str], endpoint: str | None, token: str | None) -> QuantCandidate | None:
    where = f"{repo}@{branch}"
    with hub_errors(repo, commit):
        entries = {e.path: e for e in api.list_repo_tree(repo, revision=commit, recursive=True)
                   if isinstance(e, RepoFile)}
    selected = select_files(entries, include=include, exclude=exclude).selected
    weights = [p for p in selected if p.endswith(".safetensors")]
    if "config.json" not in entries or not weights:
        return None  # not a safetensors variant (GGUF, .bin only, docs, onnx ...)
    r = _Reader(LockedModel(source="hub", files=(), repo=repo, revision=branch, commit=commit), endpoint, token)
    with hub_errors(repo, commit):
        config = _config(r, entries["config.json"], where)
        headers = [_safetensors_header(r, LockedFile(p, entries[p].size, "")) for p in weights]
    facts = model_facts_from_headers(config, headers, source=where, files=selected)
    return QuantCandidate(where, facts)


def hub_branch_candidates(repo: str, branches: Mapping[str, str], *, endpoint: str | None = None,
                          token: str | None = None, include: Sequence[str] = (),
                          exclude: Sequence[str] = ()) -> tuple[QuantCandidate, ...]:
    """One planner candidate per branch holding a safetensors checkpoint, ``ref`` = ``repo@branch``.

    ``branches`` maps branch name to the commit to read (``hub_branches`` gives them); ``include`` and
    ``exclude`` are ``model.files`` and ``model.exclude``, so each variant is measured as it would be locked.
    Branches without ``config.json`` or safetensors weights are not variants and are left out.
    """
    api = HfApi(endpoint=endpoint, token=token)
    out = []
    for branch, commit in sorted(branches.items()):
        cand = _candidate(api, repo, branch, commit, include, exclude, endpoint, token)
        if cand is not None:
            out.append(cand)
    return tuple(out)
