"""GGUF: each file's header (metadata and tensor sizes, never the tensor data), from a local file or the first bytes
of a remote one, the model facts of one variant (all its split shards), and the variants in a folder.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from airpack.errors import SourceError
from airpack.plan.facts import LFS_POINTER_PREFIX, ModelFacts, Quantization, max_int, per_layer, pos_int
from airpack.plan.gguf_header import Header, Malformed, Truncated, gguf, parse_header

GGUF_MAGIC = b"GGUF"
_GGUF_FIRST_READ = 4 * 1024 * 1024  # most headers fit; larger vocabularies are read on
_GGUF_MAX_HEADER = 256 * 1024 * 1024  # a 256k-token vocabulary with merges is ~20 MB; more is a broken file

# Split GGUF files follow llama.cpp's "%s-%05d-of-%05d.gguf" (1-based index).
_GGUF_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$", re.IGNORECASE)


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


def gguf_facts(config: Mapping[str, Any] | None, shards: Sequence[GgufSummary], source: str) -> ModelFacts:
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

    layers = pos_int(meta("block_count"))
    heads_raw, kv_raw = meta("attention.head_count"), meta("attention.head_count_kv")
    heads = max_int(heads_raw)
    if layers is None or heads is None:
        raise SourceError(
            f"{first.name}: GGUF metadata lacks {arch}.block_count or {arch}.attention.head_count"
        )
    kv_per_layer = per_layer(kv_raw if kv_raw is not None else heads_raw, layers)
    attention_layers = sum(1 for n in kv_per_layer if n > 0)
    kv_heads = max(kv_per_layer)
    embedding = pos_int(meta("embedding_length"))
    head_dim = pos_int(meta("attention.key_length")) or (embedding // heads if embedding else None)
    if head_dim is None:
        raise SourceError(f"{first.name}: GGUF metadata gives no head size ({arch}.attention.key_length)")
    v_head_dim = pos_int(meta("attention.value_length")) or head_dim

    mla_kv_dim = None
    kv_lora_rank = pos_int(meta("attention.kv_lora_rank"))
    if kv_lora_rank:
        mla_kv_dim = kv_lora_rank + (pos_int(meta("rope.dimension_count")) or 0)

    window = pos_int(meta("attention.sliding_window"))
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
        intermediate_size=max_int(meta("feed_forward_length")),
        vocab_size=pos_int(meta("vocab_size")) or first.vocab_size,
        max_context=pos_int(meta("context_length")),
        sliding_window=window if sliding else None,
        sliding_layers=sliding,
        mla_kv_dim=mla_kv_dim,
        gguf_shards=len(ordered),
        files=tuple(s.name for s in ordered),
    )


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
