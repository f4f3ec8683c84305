"""SIGKILL a real ``airpack join`` while it copies (the USB disk pulled, the laptop closed): nothing appears at
``--out`` before every byte is in, the rerun finishes from where the killed one stopped, and the joined bundle
verifies and equals the original byte for byte.

The join is frozen with SIGSTOP once its state file lists N pieces, inspected, then killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airpack.verify import signed_root, verify_bundle
from airpack.volumes import split_bundle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def volumes(built_bundle, keys, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    model = tmp_path_factory.mktemp("model")
    rng = random.Random(11)  # noqa: S311 - test data
    (model / "big.gguf").write_bytes(rng.randbytes(150 * MIB))  # three 64 MiB chunks: cut across volumes
    for i in range(3):
        (model / f"shard-{i}.safetensors").write_bytes(rng.randbytes(20 * MIB))
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    bundle = built_bundle(model, key=keys.ed25519)
    out = tmp_path_factory.mktemp("volumes")
    vols = split_bundle(bundle, [keys.ed25519.public], out, 90 * 10**6)
    return bundle, [out / v.folder_name for v in vols]


def _join(vols: list[Path], out: Path, pub: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "airpack", "join", *map(str, vols), "--key", str(pub),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _pieces_in(out: Path) -> int:
    try:
        return len(json.loads((out.parent / f".{out.name}.airpack-join" / "state.json").read_text())["done"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("after", [0, 1, 3])
def test_a_killed_join_resumes_and_completes(volumes: tuple[Path, list[Path]], keys, tmp_path: Path,
                                             after: int) -> None:
    bundle, vols = volumes
    assert len(vols) >= 3
    out = tmp_path / "bundle"
    proc = _join(vols, out, keys.ed25519.pair.public_path)
    deadline = time.monotonic() + 60
    while _pieces_in(out) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        assert proc.poll() is None, "the join finished before it could be stopped"
        assert not out.exists()  # never a half-joined bundle at --out
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    rerun = _join(vols, out, keys.ed25519.pair.public_path)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr and b"complete" in stdout  # the result on stdout
    verify_bundle(out, [keys.ed25519.public])
    for rel in signed_root(bundle, [keys.ed25519.public]).listed:
        assert (out / rel).read_bytes() == (bundle / rel).read_bytes(), rel
    assert not (tmp_path / ".bundle.airpack-join").exists()


def test_the_big_file_really_spans_volumes(volumes: tuple[Path, list[Path]]) -> None:
    _, vols = volumes
    parts = sorted(p.name for v in vols for p in (v / "model").iterdir() if p.name.startswith("big.gguf"))
    assert parts == ["big.gguf.part001", "big.gguf.part002", "big.gguf.part003"]
