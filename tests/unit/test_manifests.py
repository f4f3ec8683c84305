"""The example specs in ``manifests/`` work as their comments say (issue #19 item 5): every one parses; the local
one plans offline after the one documented copy; a Hub one run offline says in one line that ``plan`` needs the
Hub and how to plan without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.spec import load_spec
from tests.unit.plan_helpers import SMOLLM2_GGUF, find_smollm2_gguf

pytestmark = pytest.mark.disable_socket

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(MANIFESTS) >= 4


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses_as_it_is_in_the_repository(path: Path) -> None:
    spec = load_spec(path)  # a local folder it names must exist
    assert spec.name and (spec.model.repo or (spec.model_dir is not None and spec.model_dir.is_dir()))


def test_the_local_example_plans_offline_after_the_documented_copy(tmp_path: Path) -> None:
    copy = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests", copy)
    spec = load_spec(copy / "smollm2-local.yaml")
    assert spec.model_dir is not None
    readme = (spec.model_dir / "README.md").read_text()
    assert SMOLLM2_GGUF in readme and f"manifests/{spec.model_dir.name}/" in readme
    shutil.copy(find_smollm2_gguf(), spec.model_dir / SMOLLM2_GGUF)  # the documented cp
    documented = re.search(r"airpack (plan manifests/smollm2-local\.yaml[^\n]*)", readme)
    assert documented, readme
    argv = documented.group(1).split("#")[0].split()
    argv[1] = str(copy / "smollm2-local.yaml")
    result = CliRunner().invoke(app, [*argv, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["fits"] and data["engine"] == "llamacpp"


@pytest.mark.parametrize("path", [p for p in MANIFESTS if "repo:" in p.read_text()], ids=lambda p: p.name)
def test_a_hub_example_offline_says_plan_needs_the_hub(path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-m", "airpack", "plan", str(path), "--gpu", "L4"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "HF_HUB_OFFLINE is set" in line and "model.cache" in line and "model.path" in line, line
    assert "internal error" not in out.stderr and "rerun resumes" not in out.stderr
