"""Planning a Hub model from metadata alone: config.json plus safetensors headers or a GGUF's head, read with
HTTP range requests against the hub server fixture; the weights are never downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hubserver import HubServer

from airpack.errors import SourceError
from airpack.plan.spec import verdict
from airpack.sources import resolve_hub
from airpack.sources.hf_plan import hub_model_facts
from airpack.spec import ModelSpec, parse_spec

pytestmark = pytest.mark.integration


def _spec(tmp_path: Path, repo: str, runtime: str) -> dict[str, object]:
    return {"apiVersion": "airpack/v1", "name": "p", "version": "1.0.0", "model": {"repo": repo},
            "runtime": {"engine": runtime, "image": "docker-daemon:unused:1", "context": 1024},
            "target": {"gpus": 1, "gpu": "T4"}}


def test_safetensors_facts_from_range_reads(hub: HubServer, tmp_path: Path) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/tiny", files=("*.json", "*.safetensors")), endpoint=hub.url)
    facts = hub_model_facts(locked, endpoint=hub.url)
    weights = next(f for f in locked.files if f.path == "model.safetensors")
    assert facts.num_layers == 2 and facts.num_attention_heads == 4
    assert 0 < facts.weights_bytes < weights.size  # tensor bytes: the file minus its header
    spec = parse_spec(_spec(tmp_path, "acme/tiny", "vllm"), tmp_path)
    plan, checks = verdict(spec, facts)
    # float32 checkpoint: the engine loads it in 16-bit, so half the bytes sit on the GPU
    assert plan is not None and plan["weights_bytes"] == facts.weights_bytes // 2 and plan["fits"]
    assert {c["name"] for c in checks} >= {"format", "fits"}


def test_gguf_head_is_enough_and_weights_stay_on_the_hub(hub: HubServer, tmp_path: Path) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/smol"), endpoint=hub.url)
    gguf = next(f for f in locked.files if f.path.endswith(".gguf"))
    seen = len(hub.state.requests)
    facts = hub_model_facts(locked, endpoint=hub.url)
    assert facts.weight_format == "gguf" and facts.num_layers == 30 and facts.num_kv_heads == 3
    sent = sum(r.body_bytes for r in hub.state.requests[seen:])
    assert 0 < sent < gguf.size // 4  # only the head of the 98 MB file crossed the wire
    assert any(r.range for r in hub.state.requests[seen:])
    spec = parse_spec(_spec(tmp_path, "acme/smol", "llamacpp"), tmp_path)
    plan, _ = verdict(spec, facts)
    assert plan is not None and plan["kv_bytes_per_token"] == 30 * 2 * 3 * 64 * 2


def test_cli_lock_refuses_gguf_for_vllm_before_images(hub: HubServer, tmp_path: Path) -> None:
    (tmp_path / "airpack.yaml").write_text(
        "apiVersion: airpack/v1\nname: p\nversion: 1.0.0\nmodel:\n  repo: acme/smol\n"
        "runtime:\n  engine: vllm\ntarget:\n  gpus: 1\n  gpu: L4\n")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}
    proc = subprocess.run([sys.executable, "-m", "airpack", "lock", str(tmp_path / "airpack.yaml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "format:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "airpack.lock").exists()


def test_quant_choice_among_a_repos_gguf_variants(hub: HubServer, smollm2_gguf: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    import json

    from hubserver import GGUF_NAME, commit_id, lfs, lfs_on_disk

    from tests.unit.plan_helpers import write_tiny_gguf

    tiny = write_tiny_gguf(tmp_path / "tiny-Q8_0.gguf").read_bytes()
    commit = commit_id("variants")
    hub.add_repo("acme/variants", {commit: [lfs_on_disk(GGUF_NAME, *smollm2_gguf), lfs("tiny-Q8_0.gguf", tiny)]},
                 {"main": commit})
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}
    for want, expected in (("Q8_0", "tiny-Q8_0.gguf"), ("auto", GGUF_NAME)):
        (tmp_path / "airpack.yaml").write_text(
            f"apiVersion: airpack/v1\nname: v\nversion: 1.0.0\nmodel:\n  repo: acme/variants\n  quant: {want}\n")
        proc = subprocess.run([sys.executable, "-m", "airpack", "lock", str(tmp_path / "airpack.yaml")],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        model = json.loads((tmp_path / "airpack.lock").read_text())["model"]
        assert [f["path"] for f in model["files"]] == [expected]
        assert model["quant"]["file"] == expected
        assert any("model.quant" in e["reason"] for e in model["excluded"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "message"), [("ignore_range", "ignored an HTTP Range request"),
                                               ("oversized_range", "more than the")])
def test_a_mirror_that_ignores_range_is_stopped_after_a_bounded_read(hub: HubServer, mode: str,
                                                                     message: str) -> None:
    locked = resolve_hub(ModelSpec(repo="acme/smol"), endpoint=hub.url)
    gguf = next(f for f in locked.files if f.path.endswith(".gguf"))
    setattr(hub.state, mode, True)
    seen = len(hub.state.requests)
    with pytest.raises(SourceError, match=message) as info:
        hub_model_facts(locked, endpoint=hub.url)
    assert "Range" in str(info.value) and "\n" not in str(info.value)
    sent = sum(r.body_bytes for r in hub.state.requests[seen:])
    assert sent < gguf.size // 2  # the 98 MB file was not read whole


def test_cli_plan_without_the_hub_says_plan_needs_it_and_how_to_plan_offline(tmp_path: Path) -> None:
    """Issue #19 item 5: one line naming the Hub and the offline sources, not "a rerun resumes"."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "airpack.yaml").write_text(
        "apiVersion: airpack/v1\nname: p\nversion: 1.0.0\nmodel:\n  repo: acme/smol\n"
        "runtime:\n  engine: llamacpp\ntarget:\n  gpus: 1\n  gpu: L4\n")
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_DISABLE_XET": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-m", "airpack", "plan", str(tmp_path / "airpack.yaml")],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: plan: acme/smol") and "network error talking to the Hub" in line, line
    assert "model.path" in line and "model.cache" in line and "rerun resumes" not in line
    assert "internal error" not in proc.stderr
