"""safetensors: each shard's JSON header (read and checked against the file, never the weights) and the model facts
that its tensors and the model's ``config.json`` give together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from airpack.errors import SourceError
from airpack.plan.facts import LFS_POINTER_PREFIX, ModelFacts, first_of, pos_int
from airpack.plan.hf_config import (
    arch_name,
    dtype_name,
    quantization_from_config,
    read_json,
    sliding_layout,
    text_config,
)

# safetensors: an 8-byte little-endian header length, then that many bytes of JSON. 100 MiB is the limit the
# safetensors library itself enforces; anything larger is not a header.
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024

# Bits per element of each safetensors dtype (sub-byte float formats pack several elements per byte).
SAFETENSORS_DTYPE_BITS: Mapping[str, int] = MappingProxyType(
    {
        "F64": 64, "I64": 64, "U64": 64,
        "F32": 32, "I32": 32, "U32": 32,
        "F16": 16, "BF16": 16, "I16": 16, "U16": 16,
        "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "I8": 8, "U8": 8, "BOOL": 8,
        "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4,
    }
)  # fmt: skip


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of one safetensors file, reading only its first 8 + N bytes; checked against the file size."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise SourceError(f"{p}: not a safetensors file (shorter than 8 bytes)")
            length = int.from_bytes(prefix, "little")
            if prefix.startswith(LFS_POINTER_PREFIX):
                raise SourceError(f"{p}: is a Git LFS pointer, not weights", hint="run 'git lfs pull' first")
            if length > SAFETENSORS_MAX_HEADER or 8 + length > size:
                raise SourceError(f"{p}: bad safetensors header length {length} (file is {size} bytes)")
            body = fh.read(length)
    except OSError as exc:
        raise SourceError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    header = parse_safetensors_header(body, where=str(p))
    end = 8 + length + _header_data_end(header)
    if end > size:
        raise SourceError(f"{p}: truncated: the header describes {end} bytes but the file has {size}")
    return header


def parse_safetensors_header(body: bytes, *, where: str = "safetensors header") -> dict[str, Any]:
    """Parse and check the JSON header bytes (without the 8-byte length prefix)."""
    try:
        header = json.loads(body.rstrip(b" ").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{where}: header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise SourceError(f"{where}: header is not a JSON object")
    check_safetensors_header(header, where)
    return header


def check_safetensors_header(header: Mapping[str, Any], where: str) -> None:
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, Mapping):
            raise SourceError(f"{where}: tensor {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise SourceError(f"{where}: tensor {name!r} has no dtype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SourceError(f"{where}: tensor {name!r} has a bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise SourceError(f"{where}: tensor {name!r} has bad data_offsets {offsets!r}")
        bits = SAFETENSORS_DTYPE_BITS.get(dtype)
        if bits is not None:
            expected = math.ceil(math.prod(shape) * bits / 8)
            if offsets[1] - offsets[0] != expected:
                raise SourceError(
                    f"{where}: tensor {name!r} ({dtype} {shape}) spans {offsets[1] - offsets[0]} bytes, "
                    f"expected {expected}"
                )


def _header_data_end(header: Mapping[str, Any]) -> int:
    ends = [info["data_offsets"][1] for name, info in header.items() if name != "__metadata__"]
    return max(ends, default=0)


def _tensors(header: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    """(name, dtype, elements, bytes) for each tensor in a header."""
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        out.append((name, str(info["dtype"]), math.prod(info["shape"]), int(end) - int(begin)))
    return out


def safetensors_facts(
    config: Mapping[str, Any],
    headers: Sequence[Mapping[str, Any]],
    source: str,
    quant_config: Mapping[str, Any] | None,
    files: tuple[str, ...],
) -> ModelFacts:
    cfg = text_config(config)
    layers = pos_int(first_of(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    heads = pos_int(first_of(cfg, "num_attention_heads", "n_head", "num_heads", "n_heads"))
    if layers is None or heads is None:
        raise SourceError(
            f"{source}: config.json lacks num_hidden_layers or num_attention_heads",
            hint="the planner reads the architecture from config.json (or text_config for multimodal models)",
        )
    kv_heads = pos_int(
        first_of(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
    )
    if kv_heads is None:
        kv_heads = 1 if cfg.get("multi_query") is True else heads
    hidden = pos_int(first_of(cfg, "hidden_size", "n_embd", "d_model", "dim"))
    head_dim = pos_int(cfg.get("head_dim")) or (hidden // heads if hidden else None)
    if head_dim is None:
        raise SourceError(f"{source}: config.json gives neither head_dim nor hidden_size")
    v_head_dim = pos_int(cfg.get("v_head_dim")) or head_dim
    mla_kv_dim = None
    kv_lora_rank = pos_int(cfg.get("kv_lora_rank"))
    if kv_lora_rank:
        mla_kv_dim = kv_lora_rank + (pos_int(cfg.get("qk_rope_head_dim")) or 0)
    attention_layers, sliding_layers, window = sliding_layout(cfg, layers, source)

    ffn = pos_int(first_of(cfg, "intermediate_size", "n_inner", "ffn_hidden_size"))
    moe_ffn, experts_per_tok = (
        pos_int(cfg.get("moe_intermediate_size")),
        pos_int(cfg.get("num_experts_per_tok")),
    )
    if moe_ffn and experts_per_tok:
        ffn = max(ffn or 0, moe_ffn * experts_per_tok)

    tensors = [t for h in headers for t in _tensors(h)]
    if not tensors:
        raise SourceError(f"{source}: the safetensors headers describe no tensors")
    by_dtype: dict[str, int] = {}
    for _, dt, _, n in tensors:
        by_dtype[dt] = by_dtype.get(dt, 0) + n
    dtype = dtype_name(first_of(cfg, "torch_dtype", "dtype"))
    if dtype is None:  # fall back to the dtype holding most float bytes
        floats = {d: n for d, n in by_dtype.items() if d in ("BF16", "F16", "F32")}
        if floats:
            dtype = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[
                max(floats, key=lambda d: floats[d])
            ]
    qc = config.get("quantization_config") or cfg.get("quantization_config") or quant_config
    quant = quantization_from_config(qc if isinstance(qc, Mapping) else None, dtype, where=source)
    packed = quant.scheme not in ("none", "fp8", "fp8-weight-only", "int8")
    return ModelFacts(
        source=source,
        weight_format="safetensors",
        weights_bytes=sum(n for *_, n in tensors),
        quantization=quant,
        num_layers=layers,
        attention_layers=attention_layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        v_head_dim=v_head_dim,
        dtype=dtype,
        architecture=arch_name(config),
        param_count=None if packed else sum(e for _, _, e, _ in tensors),
        bytes_by_dtype=tuple(sorted(by_dtype.items())),
        hidden_size=hidden,
        intermediate_size=ffn,
        vocab_size=pos_int(cfg.get("vocab_size")),
        max_context=pos_int(
            first_of(
                cfg,
                "max_position_embeddings",
                "n_positions",
                "max_seq_len",
                "seq_length",
                "max_sequence_length",
            )
        ),
        sliding_window=window,
        sliding_layers=sliding_layers,
        mla_kv_dim=mla_kv_dim,
        files=files,
    )


def safetensors_files(model_dir: Path) -> list[Path]:
    """The safetensors shards of the checkpoint: the index's weight_map when present, else every top-level file.

    Mistral repos ship ``consolidated.safetensors`` beside the HF shards; counting both would double the weights.
    """
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, Mapping):
            raise SourceError(f"{index}: has no weight_map object")
        return [model_dir / name for name in sorted({str(v) for v in weight_map.values()})]
    found = sorted(p for p in model_dir.glob("*.safetensors") if p.is_file())
    plain = [p for p in found if not p.name.startswith("consolidated")]
    return plain or found
