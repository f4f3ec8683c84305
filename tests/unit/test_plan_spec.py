"""The planner applied at lock time and by `airpack plan`: refuse what cannot fit or run, pick a quantization."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.errors import CompatibilityError
from airpack.locking import resolve
from airpack.spec import load_spec
from tests.unit.plan_helpers import find_smollm2_gguf, write_tiny_gguf

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _spec(root: Path, body: str) -> Path:
    (root / "airpack.yaml").write_text(
        "apiVersion: airpack/v1\nname: smol\nversion: 1.0.0\nmodel:\n  path: model\n" + body)
    return root / "airpack.yaml"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy(find_smollm2_gguf(), d / GGUF)
    return d


def test_lock_refuses_gguf_on_vllm_before_touching_images(tmp_path: Path, model_dir: Path) -> None:
    spec = load_spec(_spec(tmp_path, "runtime:\n  engine: vllm\ntarget:\n  gpus: 1\n  gpu: L4\n"))
    with pytest.raises(CompatibilityError, match=r"format: .*GGUF.*llama\.cpp"):
        resolve(spec, cache_dir=tmp_path / "cache")  # no socket is opened: sockets are disabled here


def test_lock_refuses_a_model_that_does_not_fit(tmp_path: Path, model_dir: Path) -> None:
    spec = load_spec(_spec(tmp_path, "runtime:\n  engine: llamacpp\n  image: docker-daemon:x:1\n"
                           "target:\n  gpus: 0\n  vram: 0.2\n"))
    with pytest.raises(CompatibilityError, match="fits:"):
        resolve(spec, cache_dir=tmp_path / "cache")


def test_cli_lock_exits_2_with_one_line(tmp_path: Path, model_dir: Path) -> None:
    path = _spec(tmp_path, "runtime:\n  engine: tgi\ntarget:\n  gpus: 1\n  gpu: T4\n")
    result = CliRunner().invoke(app, ["lock", str(path)])
    assert result.exit_code == 2
    assert "format:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "airpack.lock").exists()


def test_quant_choice_keeps_one_variant_and_says_why(tmp_path: Path, model_dir: Path) -> None:
    write_tiny_gguf(model_dir / "tiny-Q8_0.gguf")
    spec = load_spec(_spec(tmp_path, "  quant: Q8_0\n"))
    lock = resolve(spec, cache_dir=tmp_path / "cache")
    assert [f.path for f in lock.model.files] == ["tiny-Q8_0.gguf"]
    assert lock.model.quant is not None and lock.model.quant["chosen"] == "Q8_0"
    assert any(e.path == GGUF and "model.quant" in e.reason for e in lock.model.excluded)
    auto = resolve(load_spec(_spec(tmp_path, "  quant: auto\n")), cache_dir=tmp_path / "cache")
    assert [f.path for f in auto.model.files] == [GGUF]  # the larger (higher-quality) variant


def test_plan_json_has_the_documented_keys(tmp_path: Path, model_dir: Path) -> None:
    path = _spec(tmp_path, "runtime:\n  engine: llamacpp\ntarget:\n  gpus: 0\n")
    result = CliRunner().invoke(app, ["plan", str(path), "--gpu", "T4", "--context", "4096", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    for key in ("weights_bytes", "kv_bytes_per_token", "required_bytes", "available_bytes", "fits",
                "max_context", "checks"):
        assert key in data
    assert data["fits"] is True and data["kv_bytes_per_token"] == 30 * 2 * 3 * 64 * 2  # layers*K,V*kv_heads*dim*f16
    small = CliRunner().invoke(app, ["plan", str(path), "--gpus", "0", "--vram", "0.1", "--json"])
    assert json.loads(small.stdout)["data"]["fits"] is False


def test_the_lock_records_the_model_facts_even_without_a_memory_plan(tmp_path: Path, model_dir: Path) -> None:
    """No target.gpu/vram: no plan, but the facts the ModelPack config is made of are known and recorded."""
    from airpack.lock import Lock, lock_local
    from airpack.oci.modelpack import info_from_bundle
    from airpack.plan.spec import local_facts, size_only, verdict

    spec = load_spec(_spec(tmp_path, "runtime:\n  engine: llamacpp\n  image: docker-daemon:x:1\ntarget:\n"
                                     "  gpus: 0\n"))
    facts = local_facts(spec, lock_local(spec, digest_of=size_only))
    assert verdict(spec, facts)[0] is None  # memory not planned
    summary = facts.summary()
    assert summary == {"architecture": "llama", "param_count": summary["param_count"], "weight_format": "gguf",
                       "quantization": "Q4_1"}
    assert 130_000_000 < summary["param_count"] < 140_000_000
    lock = Lock.from_dict(Lock(spec_digest="sha256:" + "0" * 64, model=lock_local(spec, digest_of=size_only),
                               facts=summary).to_dict())
    assert lock.facts == summary
    info = info_from_bundle("smol", "1.0.0", None, lock.to_dict(), None)
    assert (info.architecture, info.param_size, info.format, info.quantization) == ("llama", "135M", "gguf", "Q4_1")
