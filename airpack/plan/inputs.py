"""Model facts read from metadata alone: config.json, safetensors headers and GGUF metadata, never the weights.

Two entry points share one builder: ``model_facts_from_dir`` reads a local directory, and
``model_facts_from_headers`` takes what a Hub source fetched with HTTP range reads (the parsed config, each
safetensors header, a ``GgufSummary`` per GGUF file) so a remote model is planned before anything is downloaded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from airpack.errors import SourceError
from airpack.plan.gguf_header import Header, Malformed, Truncated, gguf, parse_header

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

GGUF_MAGIC = b"GGUF"
_GGUF_FIRST_READ = 4 * 1024 * 1024  # most headers fit; larger vocabularies are read on
_GGUF_MAX_HEADER = 256 * 1024 * 1024  # a 256k-token vocabulary with merges is ~20 MB; more is a broken file
LFS_POINTER_PREFIX = b"vers"  # "version https://git-lfs…": an un-smudged Git LFS pointer, not a model file

# Split GGUF files follow llama.cpp's "%s-%05d-of-%05d.gguf" (1-based index).
_GGUF_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$", re.IGNORECASE)

_DTYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "bfloat16": "bfloat16", "bf16": "bfloat16",
        "float16": "float16", "fp16": "float16", "half": "float16", "f16": "float16",
        "float32": "float32", "fp32": "float32", "float": "float32", "f32": "float32",
    }
)  # fmt: skip
_SHORT_DTYPE: Mapping[str, str] = MappingProxyType({"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"})


@dataclass(frozen=True)
class Quantization:
    """How the weights are stored, normalized across quantizers.

    ``scheme`` is one of: ``none`` (plain fp16/bf16/fp32), ``awq``, ``gptq``, ``fp8`` (FP8 weights and
    activations, W8A8), ``fp8-weight-only`` (W8A16), ``int8`` (INT8 W8A8), ``w4a16`` (compressed-tensors 4-bit
    weights), ``bitsandbytes``, ``exl2``, ``gguf`` (the GGUF file type is in ``method``) or ``other``.
    """

    scheme: str
    label: str
    method: str | None = None
    bits: int | None = None
    group_size: int | None = None


@dataclass(frozen=True)
class GgufSummary:
    """What one GGUF file says about itself: metadata scalars and numeric arrays, plus its tensor sizes.

    ``metadata`` keeps every key except tokenizer arrays (which can be megabytes); ``tensor_bytes`` is the sum of
    the tensors' data sizes, which is what the weights take in memory.
    """

    name: str
    metadata: Mapping[str, Any]
    tensor_bytes: int
    tensor_elements: int
    bytes_by_type: tuple[tuple[str, int], ...]
    vocab_size: int | None = None

    def get(self, key: str) -> Any:
        return self.metadata.get(key)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise SourceError(f"{self.name}: GGUF metadata has no general.architecture")
        return arch

    @property
    def split_no(self) -> int:
        value = self.metadata.get("split.no")
        return int(value) if isinstance(value, int) else 0

    @property
    def split_count(self) -> int:
        value = self.metadata.get("split.count")
        return int(value) if isinstance(value, int) and value > 0 else 1


@dataclass(frozen=True)
class ModelFacts:
    """Everything the planner needs to know about one model variant, in the model's own numbers.

    ``attention_layers`` counts layers that keep a KV cache (hybrid SSM layers do not); ``sliding_layers`` of
    them only keep the last ``sliding_window`` tokens. ``mla_kv_dim`` is set for multi-head latent attention
    (DeepSeek-V2/V3), whose cache is one latent vector per layer instead of K and V per head.
    """

    source: str
    weight_format: str  # "safetensors" | "gguf"
    weights_bytes: int
    quantization: Quantization
    num_layers: int
    attention_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    dtype: str | None = None
    architecture: str | None = None
    param_count: int | None = None
    bytes_by_dtype: tuple[tuple[str, int], ...] = ()
    hidden_size: int | None = None
    intermediate_size: int | None = None
    vocab_size: int | None = None
    max_context: int | None = None
    sliding_window: int | None = None
    sliding_layers: int = 0
    mla_kv_dim: int | None = None
    gguf_shards: int = 0
    files: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        positive = ("num_layers", "attention_layers", "num_attention_heads", "num_kv_heads", "head_dim")
        problems = [f"{name} must be positive" for name in positive if getattr(self, name) <= 0]
        if self.weights_bytes < 0:
            problems.append("weights_bytes must not be negative")
        if not 0 <= self.sliding_layers <= self.attention_layers:
            problems.append("sliding_layers must be between 0 and attention_layers")
        if self.sliding_layers and not self.sliding_window:
            problems.append("sliding_layers without a sliding_window")
        if problems:
            raise SourceError(f"{self.source}: unusable model facts: {'; '.join(problems)}")

    @property
    def full_attention_layers(self) -> int:
        return self.attention_layers - self.sliding_layers

    @property
    def is_gguf(self) -> bool:
        return self.weight_format == "gguf"


# --------------------------------------------------------------------------------------------------------------
# safetensors


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
    _check_safetensors_header(header, where)
    return header


def _check_safetensors_header(header: Mapping[str, Any], where: str) -> None:
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


# --------------------------------------------------------------------------------------------------------------
# GGUF


def read_gguf(path: str | Path) -> GgufSummary:
    """Metadata and tensor sizes of one GGUF file, from its header (the tensor data is not read)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
            if magic == LFS_POINTER_PREFIX:
                raise SourceError(f"{p}: is a Git LFS pointer, not a GGUF file", hint="run 'git lfs pull' first")
            if magic != GGUF_MAGIC:
                raise SourceError(f"{p}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
            size = p.stat().st_size
            want = min(size, _GGUF_FIRST_READ)
            fh.seek(0)
            buf = fh.read(want)
            while True:  # the header's length is only known by walking it: read more until it fits
                try:
                    return _summarize(parse_header(buf), p.name)
                except Truncated as exc:
                    if len(buf) >= size:
                        raise SourceError(f"{p}: cannot parse GGUF metadata: the file ends inside its header "
                                          f"(byte {exc.need} of {size})") from None
                    if exc.need > _GGUF_MAX_HEADER:  # a corrupt count, not a header: never read the weights
                        raise SourceError(f"{p}: cannot parse GGUF metadata: its header claims to run past "
                                          f"byte {exc.need} (the largest read is {_GGUF_MAX_HEADER >> 20} MiB)") from None
                    buf += fh.read(min(size, _GGUF_MAX_HEADER, max(exc.need, 2 * len(buf))) - len(buf))
    except Malformed as exc:
        raise SourceError(f"{p}: cannot parse GGUF metadata: {exc}") from None
    except OSError as exc:
        raise SourceError(f"{p}: cannot read: {exc.strerror or exc}") from exc


def gguf_summary_from_prefix(prefix: bytes, file_size: int, name: str) -> GgufSummary:
    """Summarize a remote GGUF from its first bytes (an HTTP range read) and its total size.

    Raises SourceError when the prefix stops before the tensor data starts (read more bytes and try again).
    """
    if not prefix.startswith(GGUF_MAGIC):
        raise SourceError(f"{name}: not a GGUF file (magic {prefix[:4]!r}, expected b'GGUF')")
    if file_size < len(prefix):
        raise SourceError(f"{name}: file size {file_size} is smaller than the {len(prefix)} bytes read")
    try:
        header = parse_header(prefix)
    except Truncated as exc:
        raise SourceError(f"{name}: the first {len(prefix)} bytes do not hold the whole GGUF header",
                          hint=f"read at least {exc.need} bytes") from None
    except Malformed as exc:
        raise SourceError(f"{name}: cannot parse GGUF metadata: {exc}") from None
    if header.data_offset > file_size:
        raise SourceError(f"{name}: the GGUF header runs to byte {header.data_offset}, past the end of the "
                          f"{file_size}-byte file")
    return _summarize(header, name)


def _summarize(header: Header, name: str) -> GgufSummary:
    """The planner's view of a header: metadata without tokenizer arrays, tensor bytes by GGML type."""
    GGML_QUANT_SIZES, GGMLQuantizationType = gguf().GGML_QUANT_SIZES, gguf().GGMLQuantizationType

    metadata: dict[str, Any] = {}
    for key, value in header.fields.items():
        if key in header.array_lengths:
            if not key.startswith("tokenizer."):
                metadata[key] = value
        elif not key.startswith("tokenizer.") or key in ("tokenizer.ggml.model", "tokenizer.ggml.pre"):
            metadata[key] = value
    by_type: dict[str, int] = {}
    total_bytes = total_elements = 0
    for tensor in header.tensors:
        try:
            qtype = GGMLQuantizationType(tensor.ggml_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise SourceError(f"{name}: tensor {tensor.name!r} has unknown GGML type {tensor.ggml_type}") from None
        elements = math.prod(tensor.dims)
        n_bytes = elements * type_size // block
        total_bytes += n_bytes
        total_elements += elements
        by_type[qtype.name] = by_type.get(qtype.name, 0) + n_bytes
    return GgufSummary(
        name=name,
        metadata=MappingProxyType(metadata),
        tensor_bytes=total_bytes,
        tensor_elements=total_elements,
        bytes_by_type=tuple(sorted(by_type.items())),
        vocab_size=header.array_lengths.get("tokenizer.ggml.tokens"),
    )


def gguf_file_type_name(file_type: object) -> str | None:
    """``general.file_type`` as the usual quant name: 15 -> "Q4_K_M", 1 -> "F16"."""
    LlamaFileType = gguf().LlamaFileType

    if not isinstance(file_type, int):
        return None
    try:
        name = str(LlamaFileType(file_type).name)
    except ValueError:
        return f"FTYPE_{file_type}"
    for prefix in ("MOSTLY_", "ALL_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _gguf_facts(config: Mapping[str, Any] | None, shards: Sequence[GgufSummary], source: str) -> ModelFacts:
    ordered = sorted(shards, key=lambda s: s.split_no)
    first = ordered[0]
    expected = first.split_count
    numbers = sorted(s.split_no for s in ordered)
    if len(ordered) != expected or numbers != list(range(expected)):
        raise SourceError(
            f"{source}: GGUF split into {expected} files but got shards {[n + 1 for n in numbers]}",
            hint="every '-0000N-of-0000M.gguf' shard must be present",
        )
    arch = first.architecture

    def meta(key: str) -> Any:
        return first.get(f"{arch}.{key}")

    layers = _pos_int(meta("block_count"))
    heads_raw, kv_raw = meta("attention.head_count"), meta("attention.head_count_kv")
    heads = _max_int(heads_raw)
    if layers is None or heads is None:
        raise SourceError(
            f"{first.name}: GGUF metadata lacks {arch}.block_count or {arch}.attention.head_count"
        )
    kv_per_layer = _per_layer(kv_raw if kv_raw is not None else heads_raw, layers)
    attention_layers = sum(1 for n in kv_per_layer if n > 0)
    kv_heads = max(kv_per_layer)
    embedding = _pos_int(meta("embedding_length"))
    head_dim = _pos_int(meta("attention.key_length")) or (embedding // heads if embedding else None)
    if head_dim is None:
        raise SourceError(f"{first.name}: GGUF metadata gives no head size ({arch}.attention.key_length)")
    v_head_dim = _pos_int(meta("attention.value_length")) or head_dim

    mla_kv_dim = None
    kv_lora_rank = _pos_int(meta("attention.kv_lora_rank"))
    if kv_lora_rank:
        mla_kv_dim = kv_lora_rank + (_pos_int(meta("rope.dimension_count")) or 0)

    window = _pos_int(meta("attention.sliding_window"))
    sliding = 0
    pattern = meta("attention.sliding_window_pattern")
    if window:
        if isinstance(pattern, tuple):
            # llama.cpp: swa_layers[i] is true when layer i uses the sliding window.
            sliding = sum(1 for i, swa in enumerate(pattern[:layers]) if swa and kv_per_layer[i] > 0)
        elif isinstance(pattern, int) and pattern > 0:
            # llama.cpp set_swa_pattern(n): every n-th layer is dense, the others slide.
            sliding = sum(1 for i in range(layers) if i % pattern < pattern - 1 and kv_per_layer[i] > 0)
        # A window without a pattern is left as full attention: overestimating memory is the safe side.
    file_type = gguf_file_type_name(first.get("general.file_type"))
    if file_type is None:
        biggest = max(first.bytes_by_type, key=lambda kv: kv[1], default=("unknown", 0))
        file_type = biggest[0]
    by_type: dict[str, int] = {}
    for shard in ordered:
        for type_name, n in shard.bytes_by_type:
            by_type[type_name] = by_type.get(type_name, 0) + n
    return ModelFacts(
        source=source,
        weight_format="gguf",
        weights_bytes=sum(s.tensor_bytes for s in ordered),
        quantization=Quantization(scheme="gguf", label=file_type, method=file_type),
        num_layers=layers,
        attention_layers=attention_layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        v_head_dim=v_head_dim,
        dtype=None,
        architecture=arch,
        param_count=sum(s.tensor_elements for s in ordered),
        bytes_by_dtype=tuple(sorted(by_type.items())),
        hidden_size=embedding,
        intermediate_size=_max_int(meta("feed_forward_length")),
        vocab_size=_pos_int(meta("vocab_size")) or first.vocab_size,
        max_context=_pos_int(meta("context_length")),
        sliding_window=window if sliding else None,
        sliding_layers=sliding,
        mla_kv_dim=mla_kv_dim,
        gguf_shards=len(ordered),
        files=tuple(s.name for s in ordered),
    )


# --------------------------------------------------------------------------------------------------------------
# config.json


def _text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language-model part of a config: multimodal configs nest it under text_config (or llm_config)."""
    merged = dict(config)
    for key in ("text_config", "llm_config", "language_config"):
        nested = config.get(key)
        if isinstance(nested, Mapping):
            merged.update({k: v for k, v in nested.items() if v is not None})
            break
    return merged


def _first(cfg: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    return None


def _pos_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _max_int(value: object) -> int | None:
    if isinstance(value, tuple | list):
        ints = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return _pos_int(max(ints)) if ints else None
    return _pos_int(value)


def _per_layer(value: object, layers: int) -> list[int]:
    if isinstance(value, tuple | list):
        ints = [int(v) for v in value]
        return (ints + [ints[-1] if ints else 0] * layers)[:layers]
    n = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return [n] * layers


def _sliding(cfg: Mapping[str, Any], layers: int, where: str) -> tuple[int, int, int | None]:
    """(attention layers, sliding layers, window) following what the config says, and only that."""
    layer_types = cfg.get("layer_types")
    window = _pos_int(_first(cfg, "sliding_window", "attention_chunk_size"))
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
    pattern = _pos_int(cfg.get("sliding_window_pattern"))
    if pattern:  # Gemma 3 style: every pattern-th layer is full attention
        return layers, layers - layers // pattern, window
    max_window_layers = cfg.get("max_window_layers")
    if cfg.get("use_sliding_window") is True and isinstance(max_window_layers, int):
        # Qwen2 style: layers at index >= max_window_layers use the window.
        return layers, max(0, layers - max_window_layers), window
    return layers, layers, window  # Mistral style: every layer slides


def _dtype_name(value: object) -> str | None:
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
    bits = _pos_int(_first(qc, "bits", "w_bit", "num_bits"))
    group = _first(qc, "group_size", "q_group_size")
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
    w_type, w_bits = str(weights.get("type", "")), _pos_int(weights.get("num_bits"))
    a_type, a_bits = (str(acts.get("type", "")), _pos_int(acts.get("num_bits"))) if acts else ("", None)
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


def _safetensors_facts(
    config: Mapping[str, Any],
    headers: Sequence[Mapping[str, Any]],
    source: str,
    quant_config: Mapping[str, Any] | None,
    files: tuple[str, ...],
) -> ModelFacts:
    cfg = _text_config(config)
    layers = _pos_int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    heads = _pos_int(_first(cfg, "num_attention_heads", "n_head", "num_heads", "n_heads"))
    if layers is None or heads is None:
        raise SourceError(
            f"{source}: config.json lacks num_hidden_layers or num_attention_heads",
            hint="the planner reads the architecture from config.json (or text_config for multimodal models)",
        )
    kv_heads = _pos_int(
        _first(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
    )
    if kv_heads is None:
        kv_heads = 1 if cfg.get("multi_query") is True else heads
    hidden = _pos_int(_first(cfg, "hidden_size", "n_embd", "d_model", "dim"))
    head_dim = _pos_int(cfg.get("head_dim")) or (hidden // heads if hidden else None)
    if head_dim is None:
        raise SourceError(f"{source}: config.json gives neither head_dim nor hidden_size")
    v_head_dim = _pos_int(cfg.get("v_head_dim")) or head_dim
    mla_kv_dim = None
    kv_lora_rank = _pos_int(cfg.get("kv_lora_rank"))
    if kv_lora_rank:
        mla_kv_dim = kv_lora_rank + (_pos_int(cfg.get("qk_rope_head_dim")) or 0)
    attention_layers, sliding_layers, window = _sliding(cfg, layers, source)

    ffn = _pos_int(_first(cfg, "intermediate_size", "n_inner", "ffn_hidden_size"))
    moe_ffn, experts_per_tok = (
        _pos_int(cfg.get("moe_intermediate_size")),
        _pos_int(cfg.get("num_experts_per_tok")),
    )
    if moe_ffn and experts_per_tok:
        ffn = max(ffn or 0, moe_ffn * experts_per_tok)

    tensors = [t for h in headers for t in _tensors(h)]
    if not tensors:
        raise SourceError(f"{source}: the safetensors headers describe no tensors")
    by_dtype: dict[str, int] = {}
    for _, dt, _, n in tensors:
        by_dtype[dt] = by_dtype.get(dt, 0) + n
    dtype = _dtype_name(_first(cfg, "torch_dtype", "dtype"))
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
        architecture=_arch_name(config),
        param_count=None if packed else sum(e for _, _, e, _ in tensors),
        bytes_by_dtype=tuple(sorted(by_dtype.items())),
        hidden_size=hidden,
        intermediate_size=ffn,
        vocab_size=_pos_int(cfg.get("vocab_size")),
        max_context=_pos_int(
            _first(
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


def _arch_name(config: Mapping[str, Any]) -> str | None:
    archs = config.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    model_type = config.get("model_type")
    return model_type if isinstance(model_type, str) else None


# --------------------------------------------------------------------------------------------------------------
# Entry points


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
        return _gguf_facts(config, gguf_files, source)
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
        _check_safetensors_header(header, f"{source}: safetensors header {i + 1}")
    return _safetensors_facts(config, safetensors_headers, source, quant_config, tuple(files))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return data


def safetensors_files(model_dir: Path) -> list[Path]:
    """The safetensors shards of the checkpoint: the index's weight_map when present, else every top-level file.

    Mistral repos ship ``consolidated.safetensors`` beside the HF shards; counting both would double the weights.
    """
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, Mapping):
            raise SourceError(f"{index}: has no weight_map object")
        return [model_dir / name for name in sorted({str(v) for v in weight_map.values()})]
    found = sorted(p for p in model_dir.glob("*.safetensors") if p.is_file())
    plain = [p for p in found if not p.name.startswith("consolidated")]
    return plain or found


def gguf_variants(model_dir: Path) -> dict[str, list[Path]]:
    """GGUF files grouped into variants: split shards ("-00001-of-00003") join their first shard's stem.

    Vision projectors (``mmproj*``) are not model variants and are left out. Keys are paths relative to
    ``model_dir`` of the variant's first file.
    """
    groups: dict[str, list[Path]] = {}
    for p in sorted(model_dir.rglob("*.gguf")):
        if not p.is_file() or p.name.lower().startswith("mmproj"):
            continue
        m = _GGUF_SPLIT.match(p.name)
        stem = str(p.parent / m.group("stem")) if m else str(p)
        groups.setdefault(stem, []).append(p)
    return {files[0].relative_to(model_dir).as_posix(): files for files in groups.values()}


def model_facts_from_dir(path: str | Path, *, gguf_file: str | None = None) -> ModelFacts:
    """Model facts for a local model directory, reading config.json, safetensors headers or GGUF metadata.

    A directory with several GGUF variants needs ``gguf_file`` (a path relative to the directory, any shard of
    the variant); without it the error lists the variants. Use ``gguf_candidates_from_dir`` to compare them.
    """
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise SourceError(f"{model_dir}: not a directory")
    config_path = model_dir / "config.json"
    config = _read_json(config_path) if config_path.is_file() else None
    quant_path = model_dir / "quant_config.json"
    quant_config = _read_json(quant_path) if quant_path.is_file() else None
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
