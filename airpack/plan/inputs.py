"""Model facts read from metadata alone: config.json, safetensors headers and GGUF metadata, never the weights.

Two entry points share one builder per format: ``model_facts_from_dir`` reads a local directory, and
``model_facts_from_headers`` takes what a Hub source fetched with HTTP range reads (the parsed config, each
safetensors header, a ``GgufSummary`` per GGUF file) so a remote model is planned before anything is downloaded.
The formats themselves: ``plan.safetensors_facts``, ``plan.gguf_facts``, ``plan.hf_config``; the result:
``plan.facts.ModelFacts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airpack.errors import SourceError
from airpack.plan.facts import ModelFacts
from airpack.plan.gguf_facts import GgufSummary, gguf_facts, gguf_variants, read_gguf
from airpack.plan.hf_config import read_json
from airpack.plan.safetensors_facts import (
    check_safetensors_header,
    read_safetensors_header,
    safetensors_facts,
    safetensors_files,
)


def model_facts_from_headers(
    config: Mapping[str, Any] | None,
    safetensors_headers: Sequence[Mapping[str, Any]] = (),
    gguf_files: Sequence[GgufSummary] = (),
    *,
    quant_config: Mapping[str, Any] | None = None,
    source: str = "model",
    files: Sequence[str] = (),
) -> ModelFacts:
    """Model facts from already-fetched metadata: parsed config.json, safetensors headers, GGUF summaries.

    Give either safetensors headers (all shards of one checkpoint; config is then required) or the GGUF
    summaries of one variant (all its split shards; config is optional), not both.
    """
    if safetensors_headers and gguf_files:
        raise SourceError(f"{source}: got both safetensors and GGUF weights; plan one variant at a time")
    if gguf_files:
        return gguf_facts(config, gguf_files, source)
    if not safetensors_headers:
        raise SourceError(
            f"{source}: no safetensors or GGUF weights found",
            hint="the planner reads safetensors headers or GGUF metadata; .bin checkpoints are not supported",
        )
    if config is None:
        raise SourceError(
            f"{source}: config.json is missing", hint="safetensors weights need their config.json"
        )
    for i, header in enumerate(safetensors_headers):
        check_safetensors_header(header, f"{source}: safetensors header {i + 1}")
    return safetensors_facts(config, safetensors_headers, source, quant_config, tuple(files))


def model_facts_from_dir(path: str | Path, *, gguf_file: str | None = None) -> ModelFacts:
    """Model facts for a local model directory, reading config.json, safetensors headers or GGUF metadata.

    A directory with several GGUF variants needs ``gguf_file`` (a path relative to the directory, any shard of
    the variant); without it the error lists the variants. Use ``gguf_candidates_from_dir`` to compare them.
    """
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise SourceError(f"{model_dir}: not a directory")
    config_path = model_dir / "config.json"
    config = read_json(config_path) if config_path.is_file() else None
    quant_path = model_dir / "quant_config.json"
    quant_config = read_json(quant_path) if quant_path.is_file() else None
    source = str(model_dir)
    variants = gguf_variants(model_dir)
    if gguf_file is not None:
        wanted = (model_dir / gguf_file).resolve()
        for files in variants.values():
            if any(f.resolve() == wanted for f in files):
                return model_facts_from_headers(config, (), [read_gguf(f) for f in files], source=source)
        raise SourceError(
            f"{source}: no GGUF file {gguf_file!r}", hint=f"found: {', '.join(variants) or 'none'}"
        )
    shards = safetensors_files(model_dir)
    if shards:
        headers = [read_safetensors_header(p) for p in shards]
        return model_facts_from_headers(
            config, headers, quant_config=quant_config, source=source, files=[p.name for p in shards]
        )
    if len(variants) == 1:
        files = next(iter(variants.values()))
        return model_facts_from_headers(config, (), [read_gguf(f) for f in files], source=source)
    if variants:
        raise SourceError(
            f"{source}: holds {len(variants)} GGUF variants: {', '.join(variants)}",
            hint="choose one (gguf_file) or compare them with gguf_candidates_from_dir",
        )
    return model_facts_from_headers(config, (), (), source=source)
