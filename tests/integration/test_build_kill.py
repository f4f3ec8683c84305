"""SIGKILL a real ``airpack build`` at several moments: nothing ever appears at ``--out`` before the build is
complete, the rerun resumes and completes, and its bundle is byte-for-byte the one an uninterrupted build of
the same lock makes (same ``SOURCE_DATE_EPOCH``; Ed25519 signatures are deterministic, so even the signature
file is identical).

To look at the bundle folder "in between", the build is frozen with SIGSTOP the moment the staging journal
reaches N lines, inspected, then killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airpack.bundle import staging_dir
from airpack.lock import write_lock
from airpack.locking import resolve
from airpack.signing import load_public_key
from airpack.spec import load_spec
from airpack.verify import verify_bundle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

N_FILES = 5
FILE_BYTES = 24 * 1024 * 1024
EPOCH = "1700000000"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A locked spec for a model folder of five 24 MiB files (a build takes about half a second)."""
    root = tmp_path_factory.mktemp("kill")
    model = root / "model"
    model.mkdir()
    rng = random.Random(7)  # noqa: S311 - test data
    for i in range(N_FILES):
        (model / f"model-{i:05d}-of-{N_FILES:05d}.safetensors").write_bytes(rng.randbytes(FILE_BYTES))
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    spec_path = root / "airpack.yaml"
    spec_path.write_text("apiVersion: airpack/v1\nname: kill-test\nversion: 1.0.0\nmodel:\n  path: model\n")
    write_lock(resolve(load_spec(spec_path), cache_dir=root / "cache"), root / "airpack.lock")
    return root


def _build(project: Path, out: Path, key: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, AIRPACK_CACHE=str(project / "cache"))
    return subprocess.Popen([sys.executable, "-m", "airpack", "build", str(project / "airpack.yaml"),
                             "--out", str(out), "--key", str(key)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


@pytest.fixture(scope="module")
def reference(project: Path, keys) -> Path:
    out = project / "reference"
    _finish(_build(project, out, keys.ed25519.key))
    return out


def _journal_lines(out: Path) -> int:
    try:
        return (staging_dir(out) / "journal.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> bool:
    """Poll until ``ready()``; False when the build finished first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.0005)
    pytest.fail("the build neither reached the moment nor finished")


def _same_bytes(a: Path, b: Path) -> None:
    for name in ("SHA256SUMS", "SHA256SUMS.sig", "airpack.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    assert files_a == sorted(p.relative_to(b).as_posix() for p in b.rglob("*"))


def _verify(bundle: Path, pub: Path) -> None:
    assert verify_bundle(bundle, [load_public_key(pub)]).total_bytes > N_FILES * FILE_BYTES


@pytest.mark.parametrize("lines", [0, 1, 3, N_FILES - 1])
def test_kill_when_the_journal_has_n_lines(lines: int, project: Path, reference: Path, keys) -> None:
    out = project / f"out-journal-{lines}"
    stage = staging_dir(out)
    proc = _build(project, out, keys.ed25519.key)
    try:
        reached = _wait_for(proc, lambda: (stage / "state.json").exists() and _journal_lines(out) >= lines)
        assert reached, "the build finished before the kill point"
        proc.send_signal(signal.SIGSTOP)
        assert not out.exists(), "a half-built bundle appeared at --out"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a half-built bundle appeared at --out"
    assert stage.is_dir()
    journaled = {json.loads(line)["path"]: (stage / "bundle" / json.loads(line)["path"]).stat().st_ino
                 for line in (stage / "journal.jsonl").read_text().splitlines()} if lines else {}
    assert len(journaled) >= lines

    _finish(_build(project, out, keys.ed25519.key))
    assert not stage.exists()
    _same_bytes(out, reference)
    _verify(out, keys.ed25519.pub)
    # Files journaled before the kill were kept (same inode), not copied again.
    for rel, ino in journaled.items():
        assert (out / rel).stat().st_ino == ino, f"{rel} was copied again instead of resumed"


@pytest.mark.parametrize("delay", [0.5, 0.75])
def test_kill_after_a_delay(delay: float, project: Path, reference: Path, keys) -> None:
    """Wherever the kill lands, --out holds either nothing or the complete bundle, and a rerun completes."""
    out = project / f"out-delay-{delay}"
    proc = _build(project, out, keys.ed25519.key)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.returncode == 0 or out.exists():
        # It won the race (or the kill landed between the publishing rename and the exit): the bundle is whole.
        _same_bytes(out, reference)
        _verify(out, keys.ed25519.pub)
        return
    print(f"killed after {delay}s with {_journal_lines(out)} files journaled")
    _finish(_build(project, out, keys.ed25519.key))
    _same_bytes(out, reference)
    _verify(out, keys.ed25519.pub)
