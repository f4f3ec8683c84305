"""Plan a Hub model without downloading its weights: ``config.json`` (checked against the lock), each
safetensors header and the head of each GGUF file, read with HTTP range requests through huggingface_hub's
own session (so tokens, endpoints and proxies behave as for downloads)."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from typing import Any

from huggingface_hub import hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session  # type: ignore[attr-defined]

from airpack.errors import FetchError, SourceError
from airpack.lock import LockedFile, LockedModel
from airpack.plan import (
    GgufSummary,
    ModelFacts,
    QuantCandidate,
    gguf_summary_from_prefix,
    model_facts_from_headers,
)

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on a header
GGUF_PREFIXES = (4 << 20, 16 << 20, 64 << 20)
_SPLIT = re.compile(r"-\d{5}-of-\d{5}(?=\.gguf$)")  # a GGUF header with a 150k-token vocabulary is ~10 MB


class _Reader:
    def __init__(self, model: LockedModel, endpoint: str | None, token: str | None) -> None:
        assert model.repo and model.commit  # noqa: S101 - a Hub lock always has both
        self.model, self.endpoint = model, endpoint
        self.headers = build_hf_headers(token=token)

    def get(self, path: str, start: int | None = None, end: int | None = None, *, cap: int = MAX_HEADER) -> bytes:
        """Bytes ``start..end`` (inclusive) of ``path``, or the whole (small) file, streamed and never more than
        asked: a mirror that ignores ``Range`` (200 instead of 206) or sends a larger body is stopped at once,
        before it can make this load a weight file into memory."""
        url = hf_hub_url(str(self.model.repo), path, revision=self.model.commit, endpoint=self.endpoint)
        where = f"{self.model.repo}@{str(self.model.commit)[:12]}: {path}"
        headers = dict(self.headers)
        if start is not None:
            headers["Range"] = f"bytes={start}-{end}"
        want = cap if start is None or end is None else end - start + 1
        with get_session().stream("GET", url, headers=headers, follow_redirects=True) as resp:
            if resp.status_code not in (200, 206):
                raise SourceError(f"{where}: HTTP {resp.status_code} while reading metadata for the plan")
            if start is not None and resp.status_code != 206:
                raise SourceError(f"{where}: the server ignored an HTTP Range request (HTTP {resp.status_code}, not "
                                  "206): planning reads only headers and will not download a whole weight file",
                                  hint="use a Hub endpoint or mirror that honours Range requests")
            parts: list[bytes] = []
            got = 0
            for block in resp.iter_bytes():
                parts.append(block)
                got += len(block)
                if got > want:
                    raise SourceError(f"{where}: the server sent more than the {want} bytes asked for; stopped "
                                      "reading", hint="use a Hub endpoint or mirror that honours Range requests")
        return b"".join(parts)


def _config(r: _Reader, f: LockedFile) -> dict[str, Any]:
    data = r.get(f.path, cap=f.size)
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise FetchError(f"{f.path}: the Hub served other bytes than it listed at lock time")
    parsed: dict[str, Any] = json.loads(data)
    return parsed


def _safetensors_header(r: _Reader, f: LockedFile) -> dict[str, Any]:
    (n,) = struct.unpack("<Q", r.get(f.path, 0, 7))
    if n > MAX_HEADER or n + 8 > f.size:
        raise SourceError(f"{f.path}: safetensors header length {n} is not plausible for a {f.size}-byte file")
    header: dict[str, Any] = json.loads(r.get(f.path, 8, 8 + n - 1))
    return header


def _gguf(r: _Reader, f: LockedFile) -> GgufSummary:
    last: SourceError | None = None
    for size in GGUF_PREFIXES:
        prefix = r.get(f.path, 0, min(size, f.size) - 1)
        try:
            return gguf_summary_from_prefix(prefix, f.size, f.path)
        except SourceError as exc:  # the header runs past this prefix: read more
            last = exc
            if size >= f.size:
                break
    assert last is not None  # noqa: S101
    raise last


def gguf_groups(model: LockedModel) -> dict[str, list[LockedFile]]:
    """The GGUF variants of a lock: split shards ("-00001-of-00003") grouped under their first shard."""
    groups: dict[str, list[LockedFile]] = {}
    for f in sorted(model.files, key=lambda f: f.path):
        name = f.path.rsplit("/", 1)[-1]
        if not f.path.endswith(".gguf") or name.lower().startswith("mmproj"):
            continue
        groups.setdefault(_SPLIT.sub("", f.path), []).append(f)
    return {files[0].path: files for files in groups.values()}


def _variant_facts(r: _Reader, model: LockedModel, config: dict[str, Any] | None,
                   shards: list[LockedFile]) -> ModelFacts:
    return model_facts_from_headers(config, gguf_files=[_gguf(r, f) for f in shards], source=str(model.repo),
                                    files=[f.path for f in model.files])


def _config_of(r: _Reader, model: LockedModel) -> dict[str, Any] | None:
    cfg = next((f for f in model.files if f.path == "config.json"), None)
    return _config(r, cfg) if cfg is not None else None


def hub_gguf_candidates(model: LockedModel, *, endpoint: str | None = None,
                        token: str | None = None) -> tuple[QuantCandidate, ...]:
    """One planner candidate per GGUF variant of the repo, each from its shards' heads."""
    r = _Reader(model, endpoint, token)
    config = _config_of(r, model)
    return tuple(QuantCandidate(ref, _variant_facts(r, model, config, shards))
                 for ref, shards in gguf_groups(model).items())


def hub_model_facts(model: LockedModel, *, endpoint: str | None = None, token: str | None = None) -> ModelFacts:
    """The model's own numbers for the planner, from a Hub lock, reading only metadata (the largest GGUF
    variant when several are selected: choose one with ``model.quant``)."""
    r = _Reader(model, endpoint, token)
    config = _config_of(r, model)
    groups = gguf_groups(model)
    if groups:
        shards = max(groups.values(), key=lambda fs: sum(f.size for f in fs))
        return _variant_facts(r, model, config, shards)
    headers = [_safetensors_header(r, f) for f in model.files if f.path.endswith(".safetensors")]
    if not headers:
        raise SourceError(f"{model.repo}: no safetensors or GGUF weights selected to plan from")
    return model_facts_from_headers(config, headers, source=str(model.repo), files=[f.path for f in model.files])
