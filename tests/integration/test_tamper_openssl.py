"""Every tamper case in ``tests/tamper.py``, for both signature algorithms: ``airpack verify --json`` exits 3
and names the exact path and kind; the untampered twin passes airpack AND the plain OpenSSL + sha256sum
recipe from the bundle docs; the recipe fails on the cases it can see (``Tampered.recipe_sees``; the ones it
cannot see are listed, with the reason, in ``tests/tamper.py``'s docstring).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tamper
from typer.testing import CliRunner

from airpack.cli import app

pytestmark = pytest.mark.integration

CHUNK = 256 * 1024  # the small model's 1 MiB safetensors file spans 5 chunks

# The recipe documented for checking a bundle without airpack (the signature is decoded outside the bundle:
# decoding it into the bundle folder would itself add an unsigned file).
RECIPE = {
    "ecdsa-p256": 'base64 -d SHA256SUMS.sig > "$W/s.der" && '
                  'openssl dgst -sha256 -verify "$PUB" -signature "$W/s.der" SHA256SUMS && '
                  "sha256sum --strict -c SHA256SUMS",
    "ed25519": 'base64 -d SHA256SUMS.sig > "$W/s.raw" && '
               'openssl pkeyutl -verify -pubin -inkey "$PUB" -rawin -in SHA256SUMS -sigfile "$W/s.raw" && '
               "sha256sum --strict -c SHA256SUMS",
}


def recipe(bundle: Path, pub: Path, algorithm: str, work: Path) -> subprocess.CompletedProcess[str]:
    work.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "W": str(work), "PUB": str(pub), "LC_ALL": "C"}
    return subprocess.run(["bash", "-c", RECIPE[algorithm]], cwd=bundle, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def verify_json(bundle: Path, pub: Path) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["verify", str(bundle), "--key", str(pub), "--json"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module", params=["ecdsa-p256", "ed25519"])
def pristine(request: pytest.FixtureRequest, keys, built_bundle: Callable[..., Path],
             make_model: Callable[..., Path]) -> tuple[Path, str, object]:
    signer = keys.by_algorithm(request.param)
    bundle = built_bundle(make_model(), key=signer, chunk_size=CHUNK)
    return bundle, request.param, signer


@pytest.mark.parametrize("case", sorted(tamper.CASES))
def test_tamper_case(case: str, pristine, keys, tmp_path: Path) -> None:
    bundle, algorithm, signer = pristine
    twin, victim = tmp_path / "twin", tmp_path / "victim"
    shutil.copytree(bundle, twin, symlinks=True)
    shutil.copytree(bundle, victim, symlinks=True)
    (tmp_path / "outside").mkdir()
    ctx = tamper.Context(trusted=signer.private, foreign=keys.by_algorithm(algorithm, foreign=True).private,
                         outside=tmp_path / "outside", chunk_size=CHUNK)

    expected = tamper.CASES[case](victim, ctx)

    code, out = verify_json(twin, signer.pub)
    assert (code, out["ok"], out["problems"]) == (0, True, [])
    good = recipe(twin, signer.pub, algorithm, tmp_path / "w-twin")
    assert good.returncode == 0, good.stdout + good.stderr

    code, out = verify_json(victim, signer.pub)
    assert code == 3 and out["exitCode"] == 3 and out["ok"] is False
    assert {(p["kind"], p["path"]) for p in out["problems"]} == set(expected.problems)  # type: ignore[union-attr]
    assert len(out["problems"]) == len(expected.problems)  # type: ignore[arg-type]
    bad = recipe(victim, signer.pub, algorithm, tmp_path / "w-victim")
    if expected.recipe_sees:
        assert bad.returncode != 0, f"the recipe should notice {case}"
    else:
        assert bad.returncode == 0, f"{case}: the recipe is documented as blind to this: {bad.stderr}"


def test_the_cli_in_a_subprocess(pristine, tmp_path: Path) -> None:
    """The real entry point: exit codes, JSON on stdout, no traceback."""
    bundle, _, signer = pristine
    victim = tmp_path / "victim"
    shutil.copytree(bundle, victim, symlinks=True)
    cmd = [sys.executable, "-m", "airpack", "verify", "--key", str(signer.pub), "--json"]
    ok = subprocess.run([*cmd, str(bundle)], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["data"]["key_fingerprint"] == signer.pair.fingerprint

    (victim / "model" / "config.json").write_text("{}")
    (victim / "model" / "tokenizer.json").unlink()
    bad = subprocess.run([*cmd, str(victim)], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 3 and "Traceback" not in bad.stdout + bad.stderr
    problems = json.loads(bad.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("modified", "model/config.json"),
                                                         ("missing", "model/tokenizer.json")]


def test_chunk_change_in_the_real_gguf(keys, built_bundle: Callable[..., Path], gguf_model: Path,
                                       tmp_path: Path) -> None:
    """The 98 MB GGUF at the default 64 MiB chunk size: two chained chunks; a byte changed in the second."""
    (gguf_name,) = (p.name for p in gguf_model.iterdir())
    bundle = built_bundle(gguf_model, key=keys.ed25519)
    manifest = json.loads((bundle / "airpack.json").read_text())
    entry = next(e for e in manifest["files"] if e["path"] == f"model/{gguf_name}")
    assert entry["chunks"]["size"] == 64 * 1024 * 1024 and len(entry["chunks"]["chain"]) == 1
    good = recipe(bundle, keys.ed25519.pub, "ed25519", tmp_path / "w1")
    assert good.returncode == 0, good.stderr
    assert verify_json(bundle, keys.ed25519.pub)[0] == 0

    with (bundle / "model" / gguf_name).open("r+b") as fh:
        fh.seek(80 * 1024 * 1024)
        byte = fh.read(1)
        fh.seek(80 * 1024 * 1024)
        fh.write(bytes([byte[0] ^ 1]))
    code, out = verify_json(bundle, keys.ed25519.pub)
    assert code == 3 and [(p["kind"], p["path"]) for p in out["problems"]] == [("modified", f"model/{gguf_name}")]
    assert recipe(bundle, keys.ed25519.pub, "ed25519", tmp_path / "w2").returncode != 0
