"""A Hugging Face cache (``model.cache``) is a local source (issue #14 item 11, #19 item 5): ``~`` is expanded, the
planner's fit check and quant choice run at lock, and ``airpack plan`` plans from the cache with no network.
Sockets are disabled in unit tests: any attempt to reach the Hub fails these tests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.errors import CompatibilityError
from airpack.locking import resolve
from airpack.sources._store import git_blob_id
from airpack.spec import load_spec
from tests.unit.plan_helpers import Arch, find_smollm2_gguf, write_model, write_tiny_gguf

pytestmark = pytest.mark.disable_socket

COMMIT = "b" * 40
REPO = "acme/model"


def hf_cache(cache: Path, files: dict[str, Path]) -> Path:
    """huggingface_hub's layout: refs/main, snapshot links into blobs/ named by sha256 (LFS) or git blob id."""
    repo = cache / ("models--" + REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for rel, src in files.items():
        if src.suffix in (".gguf", ".safetensors"):  # LFS: the blob's name is the sha256 the Hub lists
            blob = hashlib.sha256(rel.encode()).hexdigest()  # never hashed at lock or plan
        else:
            blob = git_blob_id(src.read_bytes())
        target = repo / "blobs" / blob
        if src.stat().st_size > 1 << 20:
            target.hardlink_to(src)
        else:
            shutil.copy(src, target)
        (snap / rel).symlink_to(Path("../../blobs") / blob)
    return cache


def _spec(folder: Path, cache: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "airpack.yaml").write_text(
        f"apiVersion: airpack/v1\nname: cached\nversion: 1.0.0\nmodel:\n  repo: {REPO}\n  cache: {cache}\n" + body)
    return folder / "airpack.yaml"


@pytest.fixture
def big_model(tmp_path: Path) -> dict[str, Path]:
    """Llama-3.1-8B in bf16: about 15 GiB of weights (sparse on disk)."""
    arch = Arch()
    d = write_model(tmp_path / "src8b", arch.config(), arch.plain_tensors())
    return {"config.json": d / "config.json", "model.safetensors": d / "model.safetensors"}


def test_tilde_in_model_cache_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    hf_cache(home / ".cache/huggingface/hub", {"model.gguf": find_smollm2_gguf()})
    monkeypatch.setenv("HOME", str(home))
    spec = load_spec(_spec(tmp_path / "specs", "~/.cache/huggingface/hub", ""))
    assert spec.hf_cache_dir == home / ".cache/huggingface/hub"
    lock = resolve(spec, cache_dir=tmp_path / "c")
    assert lock.model.source == "hf-cache" and [f.path for f in lock.model.files] == ["model.gguf"]


def test_lock_refuses_a_cached_model_that_cannot_fit(tmp_path: Path, big_model: dict[str, Path]) -> None:
    hf_cache(tmp_path / "hub", big_model)
    spec = load_spec(_spec(tmp_path / "s", str(tmp_path / "hub"),
                           "runtime:\n  engine: vllm\ntarget:\n  gpus: 1\n  gpu: T4\n"))
    with pytest.raises(CompatibilityError, match=r"fits: .* but .* is usable"):
        resolve(spec, cache_dir=tmp_path / "c")  # refused before any image is resolved


def test_lock_chooses_among_cached_gguf_variants(tmp_path: Path) -> None:
    tiny = write_tiny_gguf(tmp_path / "tiny-Q8_0.gguf")
    hf_cache(tmp_path / "hub", {"SmolLM2-Q4_1.gguf": find_smollm2_gguf(), "tiny-Q8_0.gguf": tiny})
    spec = load_spec(_spec(tmp_path / "s", "../hub", "  quant: Q8_0\n"))
    lock = resolve(spec, cache_dir=tmp_path / "c")
    assert [f.path for f in lock.model.files] == ["tiny-Q8_0.gguf"]
    assert lock.model.quant is not None and lock.model.quant["chosen"] == "Q8_0"
    assert [e.path for e in lock.model.excluded] == ["SmolLM2-Q4_1.gguf"]


def test_plan_reads_the_cache_offline(tmp_path: Path, big_model: dict[str, Path]) -> None:
    hf_cache(tmp_path / "hub", big_model)
    path = _spec(tmp_path / "s", "../hub", "runtime:\n  engine: vllm\n  context: 8192\ntarget:\n  gpus: 1\n")
    fits = CliRunner().invoke(app, ["plan", str(path), "--gpu", "H100", "--json"])
    assert fits.exit_code == 0, fits.output
    data = json.loads(fits.stdout)["data"]
    assert data["fits"] and 14 * 2**30 < data["weights_bytes"] < 16 * 2**30
    small = CliRunner().invoke(app, ["plan", str(path), "--gpu", "T4", "--json"])
    assert "internal error" not in small.output
    assert json.loads(small.stdout)["data"]["fits"] is False
