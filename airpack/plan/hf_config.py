"""``config.json`` as Hugging Face writes it: the language-model part of a (multimodal) config, its attention layout,
dtype and ``quantization_config``, normalized for the planner. Pure functions over parsed JSON, plus the one reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from airpack.errors import SourceError
from airpack.plan.facts import Quantization, first_of, pos_int

_DTYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "bfloat16": "bfloat16", "bf16": "bfloat16",
        "float16": "float16", "fp16": "float16", "half": "float16", "f16": "float16",
        "float32": "float32", "fp32": "float32", "float": "float32", "f32": "float32",
    }
)  # fmt: skip
_SHORT_DTYPE: Mapping[str, str] = MappingProxyType({"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"})


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return data


def text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: multimodal configs nest it under text_config (or llm_config)."""
    merged = dict(config)
    for key in ("text_config", "llm_config", "language_config"):
        nested = config.get(key)
        if isinstance(nested, Mapping):
            merged.update({k: v for k, v in nested.items() if v is not None})
            break
    return merged


def sliding_layout(cfg: Mapping[str, Any], layers: int, where: str) -> tuple[int, int, int | None]:
    """(attention layers, sliding layers, window) following what the config says, and only that."""
    layer_types = cfg.get("layer_types")
    window = pos_int(first_of(cfg, "sliding_window", "attention_chunk_size"))
    if isinstance(layer_types, list) and layer_types:
        if len(layer_types) != layers:
            raise SourceError(f"{where}: layer_types has {len(layer_types)} entries for {layers} layers")
        full = sum(1 for t in layer_types if t in ("full_attention", "attention"))
        swa = sum(1 for t in layer_types if t in ("sliding_attention", "chunked_attention"))
        if swa and not window:
            raise SourceError(f"{where}: layer_types has sliding layers but sliding_window is not set")
        return full + swa, swa, window if swa else None
    if not window or cfg.get("use_sliding_window") is False:
        return layers, 0, None
    pattern = pos_int(cfg.get("sliding_window_pattern"))
    if pattern:  # Gemma 3 style: every pattern-th layer is full attention
        return layers, layers - layers // pattern, window
    max_window_layers = cfg.get("max_window_layers")
    if cfg.get("use_sliding_window") is True and isinstance(max_window_layers, int):
        # Qwen2 style: layers at index >= max_window_layers use the window.
        return layers, max(0, layers - max_window_layers), window
    return layers, layers, window  # Mistral style: every layer slides


def dtype_name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _DTYPE_NAMES.get(value.lower().removeprefix("torch."))


def quantization_from_config(
    qc: Mapping[str, Any] | None, dtype: str | None, *, where: str = "config.json"
) -> Quantization:
    """Normalize ``quantization_config`` (or an old AutoAWQ ``quant_config.json``) into a Quantization."""
    if not qc:
        label = _SHORT_DTYPE.get(dtype or "", dtype or "unquantized")
        return Quantization(scheme="none", label=label)
    method = str(qc.get("quant_method") or ("awq" if "w_bit" in qc else "")).lower()
    bits = pos_int(first_of(qc, "bits", "w_bit", "num_bits"))
    group = first_of(qc, "group_size", "q_group_size")
    group_size = group if isinstance(group, int) and not isinstance(group, bool) else None
    g = f"-g{group_size}" if group_size and group_size > 0 else ""
    if method in ("awq", "awq_marlin"):
        return Quantization("awq", f"awq-{bits or 4}bit{g}", method, bits or 4, group_size)
    if method in ("gptq", "gptq_marlin", "marlin"):
        return Quantization("gptq", f"gptq-{bits or 4}bit{g}", method, bits or 4, group_size)
    if method == "fp8":
        return Quantization("fp8", "fp8", method, 8, None)
    if method == "compressed-tensors":
        return _compressed_tensors(qc, where)
    if method == "modelopt":
        algo = str(qc.get("quant_algo") or "").upper()
        if algo == "FP8":
            return Quantization("fp8", "fp8", method, 8, None)
        return Quantization("other", f"modelopt-{algo.lower() or 'unknown'}", method)
    if method == "bitsandbytes":
        nbits = 4 if qc.get("load_in_4bit") else 8 if qc.get("load_in_8bit") else bits
        return Quantization("bitsandbytes", f"bnb-{nbits or '?'}bit", method, nbits, None)
    if method == "exl2":
        return Quantization("exl2", f"exl2-{qc.get('bits', '?')}bpw", method, None, None)
    return Quantization("other", method or "unknown", method or None, bits, group_size)


def _compressed_tensors(qc: Mapping[str, Any], where: str) -> Quantization:
    groups = qc.get("config_groups")
    if not isinstance(groups, Mapping) or not groups:
        return Quantization("other", "compressed-tensors", "compressed-tensors")
    scheme = next(iter(groups.values()))
    if not isinstance(scheme, Mapping):
        raise SourceError(f"{where}: quantization_config.config_groups entries must be objects")
    weights = scheme.get("weights") if isinstance(scheme.get("weights"), Mapping) else {}
    acts = scheme.get("input_activations") if isinstance(scheme.get("input_activations"), Mapping) else None
    assert isinstance(weights, Mapping)  # noqa: S101 - narrowing for mypy, guaranteed above
    w_type, w_bits = str(weights.get("type", "")), pos_int(weights.get("num_bits"))
    a_type, a_bits = (str(acts.get("type", "")), pos_int(acts.get("num_bits"))) if acts else ("", None)
    group = weights.get("group_size")
    group_size = group if isinstance(group, int) and not isinstance(group, bool) else None
    method = "compressed-tensors"
    if w_type == "float" and w_bits == 8:
        if a_type == "float" and a_bits == 8:
            return Quantization("fp8", "fp8", method, 8, None)
        return Quantization("fp8-weight-only", "fp8-w8a16", method, 8, None)
    if w_type == "int" and w_bits == 8 and a_type == "int" and a_bits == 8:
        return Quantization("int8", "int8-w8a8", method, 8, None)
    if w_type == "int" and w_bits in (4, 8) and acts is None:
        g = f"-g{group_size}" if group_size and group_size > 0 else ""
        return Quantization(
            "w4a16" if w_bits == 4 else "w8a16", f"w{w_bits}a16{g}", method, w_bits, group_size
        )
    return Quantization("other", f"compressed-tensors-{w_type}{w_bits}", method, w_bits, group_size)


def arch_name(config: Mapping[str, Any]) -> str | None:
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else None
