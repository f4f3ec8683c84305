"""``model.quant`` among a Hub repo's quantized branches (TheBloke's layout): ``airpack lock`` lists the
branches, reads each one's config.json and safetensors headers with range requests, chooses one and locks that
branch at the commit it measured.

The repo is a Llama-7B-shaped model: ``main`` holds a bf16 checkpoint (~12.6 GiB of tensors), the
``gptq-8bit-128g-actorder_True`` branch a GPTQ 8-bit one (~6.6 GiB), ``gptq-4bit-128g-actorder_True`` a GPTQ
4-bit one (~3.6 GiB), each with the int32 ``qweight``/``qzeros``/``g_idx`` and fp16 ``scales`` tensors GPTQ
writes. The files are sparse: a real header followed by a hole, so only their heads exist on disk; their
sha256 is not that of the bytes, which is harmless because nothing here downloads the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hubserver import HubFile, HubServer, commit_id, lfs_on_disk, small

pytestmark = pytest.mark.integration

REPO = "thebloke/llama-7b"
H, FFN, LAYERS, VOCAB, GROUP = 4096, 11008, 32, 32000, 128
BRANCH_8, BRANCH_4 = "gptq-8bit-128g-actorder_True", "gptq-4bit-128g-actorder_True"
COMMITS = {"main": commit_id("v-bf16"), BRANCH_8: commit_id("v-gptq8"), BRANCH_4: commit_id("v-gptq4"),
           "onnx": commit_id("v-onnx")}
DTYPE_BYTES = {"BF16": 2, "F16": 2, "I32": 4}
# (in_features, out_features) of each linear layer of one decoder layer
LINEARS = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (H, H), "self_attn.v_proj": (H, H),
           "self_attn.o_proj": (H, H), "mlp.gate_proj": (H, FFN), "mlp.up_proj": (H, FFN),
           "mlp.down_proj": (FFN, H)}


def _tensors(bits: int | None) -> list[tuple[str, str, list[int]]]:
    """(name, dtype, shape) of every tensor: bf16 when ``bits`` is None, else the GPTQ packing."""
    fdt = "BF16" if bits is None else "F16"
    out = [("model.embed_tokens.weight", fdt, [VOCAB, H]), ("lm_head.weight", fdt, [VOCAB, H]),
           ("model.norm.weight", fdt, [H])]
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        out += [(f"{p}.input_layernorm.weight", fdt, [H]), (f"{p}.post_attention_layernorm.weight", fdt, [H])]
        for name, (fan_in, fan_out) in LINEARS.items():
            if bits is None:
                out.append((f"{p}.{name}.weight", "BF16", [fan_out, fan_in]))
                continue
            per_int = 32 // bits
            out += [(f"{p}.{name}.qweight", "I32", [fan_in // per_int, fan_out]),
                    (f"{p}.{name}.qzeros", "I32", [fan_in // GROUP, fan_out // per_int]),
                    (f"{p}.{name}.scales", "F16", [fan_in // GROUP, fan_out]),
                    (f"{p}.{name}.g_idx", "I32", [fan_in])]
    return out


def sparse_safetensors(path: Path, bits: int | None) -> int:
    """Write a safetensors file whose header is real and whose data is a hole; return its tensor bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in _tensors(bits):
        n = DTYPE_BYTES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        fh.truncate(8 + len(raw) + offset)
    return offset


def _config(bits: int | None) -> str:
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": 32,
        "num_key_value_heads": 32, "vocab_size": VOCAB, "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16" if bits is None else "float16"}
    if bits is not None:
        cfg["quantization_config"] = {"quant_method": "gptq", "bits": bits, "group_size": GROUP,
                                      "desc_act": True, "sym": True}
    return json.dumps(cfg, indent=2) + "\n"


def _branch(folder: Path, bits: int | None) -> list[HubFile]:
    disk = folder / f"model-{bits or 16}.safetensors"
    sparse_safetensors(disk, bits)
    with disk.open("rb") as fh:
        fake_sha = hashlib.sha256(fh.read(4096) + disk.name.encode()).hexdigest()
    return [lfs_on_disk("model.safetensors", disk, fake_sha), small("config.json", _config(bits)),
            small("README.md", f"# llama-7b {bits or 'bf16'}\n"),
            small("tokenizer.json", '{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}')]


SIZES: dict[str, int] = {}  # branch -> size of its model.safetensors, filled by the fixture


@pytest.fixture(scope="module")
def variants_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    folder = tmp_path_factory.mktemp("variants")
    with HubServer() as hub:
        commits = {COMMITS["main"]: _branch(folder, None), COMMITS[BRANCH_8]: _branch(folder, 8),
                   COMMITS[BRANCH_4]: _branch(folder, 4),
                   COMMITS["onnx"]: [small("model.onnx.txt", "not a safetensors variant\n")]}
        repo = hub.add_repo(REPO, commits, {**COMMITS, "v1.0": COMMITS[BRANCH_4]})
        repo.tags.add("v1.0")
        for branch, commit in COMMITS.items():
            weights = repo.commits[commit].get("model.safetensors")
            if weights is not None:
                SIZES[branch] = weights.size
        yield hub


def _lock(hub: HubServer, tmp_path: Path, model: str, vram: float) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec = tmp_path / "airpack.yaml"
    spec.write_text(f"apiVersion: airpack/v1\nname: v\nversion: 1.0.0\nmodel:\n  repo: {REPO}\n{model}"
                    f"target:\n  gpus: 1\n  vram: {vram}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1")
    proc = subprocess.run([sys.executable, "-m", "airpack", "lock", str(spec)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    return proc, tmp_path / "airpack.lock"


def _locked_model(proc: subprocess.CompletedProcess[str], lock: Path) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    model: dict[str, Any] = json.loads(lock.read_text())["model"]
    return model


def _weights(model: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in model["files"] if f["path"] == "model.safetensors")


def test_auto_takes_the_best_branch_that_fits(variants_hub: HubServer, tmp_path: Path) -> None:
    variants_hub.clear_log()
    proc, lock = _lock(variants_hub, tmp_path, "  quant: auto\n", 14)  # bf16 needs ~17.3 GiB, 8-bit ~11.4
    model = _locked_model(proc, lock)
    assert model["quant"]["want"] == "auto"
    assert model["quant"]["chosen"] == "gptq-8bit-g128"
    assert model["quant"]["branch"] == BRANCH_8
    assert "bf16" in model["quant"]["reason"]  # the larger variant it passed over, and why
    # the lock pins the chosen branch's own commit and that commit's files
    assert model["revision"] == BRANCH_8 and model["commit"] == COMMITS[BRANCH_8]
    assert _weights(model)["size"] == SIZES[BRANCH_8]
    # only heads of the weights crossed the wire
    assert sum(r.body_bytes for r in variants_hub.logged()) < 10 * 2**20
    # every branch was measured at the commit it was listed at
    trees = {r.path.split("/tree/")[1].split("?")[0].split("/")[0] for r in variants_hub.logged()
             if "/tree/" in r.path}
    assert {COMMITS["main"], COMMITS[BRANCH_8], COMMITS[BRANCH_4]} <= trees


def test_auto_with_room_keeps_the_unquantized_main(variants_hub: HubServer, tmp_path: Path) -> None:
    model = _locked_model(*_lock(variants_hub, tmp_path, "  quant: auto\n", 40))
    assert model["quant"]["chosen"] == "bf16" and model["quant"]["branch"] == "main"
    assert model["revision"] == "main" and model["commit"] == COMMITS["main"]
    assert _weights(model)["size"] == SIZES["main"]


def test_gptq_with_less_memory_takes_the_4bit_branch(variants_hub: HubServer, tmp_path: Path) -> None:
    wide = _locked_model(*_lock(variants_hub, tmp_path, "  quant: gptq\n", 14))
    assert wide["quant"]["branch"] == BRANCH_8  # with room, the better GPTQ variant
    model = _locked_model(*_lock(variants_hub, tmp_path, "  quant: gptq\n", 10))  # 4-bit needs ~8.4 GiB
    assert model["quant"] == {**model["quant"], "want": "gptq", "chosen": "gptq-4bit-g128", "branch": BRANCH_4}
    assert "gptq-8bit-g128" in model["quant"]["reason"]
    assert model["revision"] == BRANCH_4 and model["commit"] == COMMITS[BRANCH_4]
    assert _weights(model)["size"] == SIZES[BRANCH_4] < _weights(wide)["size"] == SIZES[BRANCH_8]


def test_a_quant_name_matching_no_branch_is_refused(variants_hub: HubServer, tmp_path: Path) -> None:
    proc, lock = _lock(variants_hub, tmp_path, "  quant: awq\n", 40)
    assert proc.returncode == 2, proc.stderr
    assert "awq" in proc.stderr and "Traceback" not in proc.stderr
    for label, branch in (("bf16", "main"), ("gptq-4bit-g128", BRANCH_4), ("gptq-8bit-g128", BRANCH_8)):
        assert f"{label} ({branch})" in proc.stderr  # what the repo does offer, and where
    assert "onnx" not in proc.stderr  # a branch without a safetensors checkpoint is no variant
    assert not lock.exists()


def test_nothing_fits_names_what_would(variants_hub: HubServer, tmp_path: Path) -> None:
    proc, lock = _lock(variants_hub, tmp_path, "  quant: gptq\n", 6)
    assert proc.returncode == 2, proc.stderr
    assert "gptq-4bit-g128" in proc.stderr and not lock.exists()


def test_a_pinned_commit_is_the_only_candidate(variants_hub: HubServer, tmp_path: Path) -> None:
    pinned = f"  revision: {COMMITS[BRANCH_8]}\n  quant: auto\n"
    model = _locked_model(*_lock(variants_hub, tmp_path, pinned, 40))  # bf16 would fit, but is not pinned
    assert model["commit"] == COMMITS[BRANCH_8] and model["quant"]["chosen"] == "gptq-8bit-g128"
    (tmp_path / "main").mkdir()
    proc, lock = _lock(variants_hub, tmp_path / "main", f"  revision: {COMMITS['main']}\n  quant: auto\n", 14)
    assert proc.returncode == 2 and not lock.exists()  # pinned bf16 does not fit, and no other branch is taken
