"""Test data lives in the repository and CI never skips what it can install (issue #14 item 15): the Compose
schema is read from ``tests/data`` (with its source and license), and a missing real part (here the llama-server
binary) fails the run under ``CI=true`` instead of skipping the tests that need it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.render_helpers import COMPOSE_SCHEMA

ROOT = Path(__file__).resolve().parents[2]

NEEDS_LLAMA = """
from tests.dockerenv import llama_server_bin  # noqa: F401


def test_needs_the_binary(llama_server_bin):
    assert llama_server_bin.is_file()
"""


def test_the_compose_schema_is_in_the_repository_with_its_license() -> None:
    assert COMPOSE_SCHEMA.is_file() and COMPOSE_SCHEMA.is_relative_to(ROOT / "tests" / "data")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["title"] == "Compose Specification" and "draft-07" in schema["$schema"]
    note = (COMPOSE_SCHEMA.parent / "README.md").read_text()
    assert "compose-spec.json" in note and "Apache" in note and "compose-spec/compose-spec" in note


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_a_missing_llama_server_fails_under_ci_and_skips_elsewhere(tmp_path: Path, ci: str, outcome: str) -> None:
    (tmp_path / "test_needs_llama.py").write_text(NEEDS_LLAMA)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": ci, "LLAMA_SERVER_BIN": str(tmp_path / "no-such-binary")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs",
                          str(tmp_path / "test_needs_llama.py")], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert outcome in out.stdout, out.stdout + out.stderr
    assert "no llama-server binary" in out.stdout
    if ci:
        assert out.returncode == 1 and "required with CI=true" in out.stdout
