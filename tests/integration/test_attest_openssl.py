"""The provenance envelope checked with OpenSSL and coreutils alone, exactly as the README shows it: the DSSE
payload and signature cut out with ``sed``, the PAE built with ``printf``, ``openssl dgst -verify`` (ECDSA) or
``openssl pkeyutl -verify -rawin`` (Ed25519), and the subject compared with ``sha256sum SHA256SUMS``."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROVENANCE_RECIPE = {
    "ecdsa-p256": 'openssl dgst -sha256 -verify "$PUB" -signature "$W/p.sig" "$W/p.pae"',
    "ed25519": 'openssl pkeyutl -verify -pubin -inkey "$PUB" -rawin -in "$W/p.pae" -sigfile "$W/p.sig"',
}
CUT = ('E=signatures/provenance.intoto.jsonl && '
       'sed \'s/.*"payload":"\\([^"]*\\)".*/\\1/\' "$E" | base64 -d > "$W/p.json" && '
       'sed \'s/.*"sig":"\\([^"]*\\)".*/\\1/\' "$E" | base64 -d > "$W/p.sig" && '
       'printf \'DSSEv1 28 application/vnd.in-toto+json %s \' "$(wc -c < "$W/p.json")" | cat - "$W/p.json" '
       '> "$W/p.pae" && ')
SUBJECT = ' && grep -q "\\"digest\\":{\\"sha256\\":\\"$(sha256sum SHA256SUMS | cut -c1-64)\\"}" "$W/p.json"'


def provenance_recipe(bundle: Path, pub: Path, algorithm: str, work: Path) -> subprocess.CompletedProcess[str]:
    work.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "W": str(work), "PUB": str(pub), "LC_ALL": "C"}
    return subprocess.run(["bash", "-c", CUT + PROVENANCE_RECIPE[algorithm] + SUBJECT], cwd=bundle, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_provenance_recipe(algorithm: str, keys, built_bundle, make_model, tmp_path: Path) -> None:
    signer = keys.by_algorithm(algorithm)
    bundle = tmp_path / "b"
    shutil.copytree(built_bundle(make_model(), key=signer), bundle)
    ok = provenance_recipe(bundle, signer.pub, algorithm, tmp_path / "w")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    other = provenance_recipe(bundle, keys.by_algorithm(algorithm, foreign=True).pub, algorithm, tmp_path / "w2")
    assert other.returncode != 0  # another key

    path = bundle / "signatures/provenance.intoto.jsonl"
    envelope = json.loads(path.read_bytes())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    path.write_text(json.dumps(envelope, separators=(",", ":")) + "\n")
    assert provenance_recipe(bundle, signer.pub, algorithm, tmp_path / "w3").returncode != 0  # a forged signature


def test_the_subject_check_sees_another_sums(keys, built_bundle, make_model, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(built_bundle(make_model(), key=keys.ecdsa), bundle)
    assert provenance_recipe(bundle, keys.ecdsa.pub, "ecdsa-p256", tmp_path / "w").returncode == 0
    with (bundle / "SHA256SUMS").open("ab") as fh:
        fh.write(b"0" * 64 + b"  model/extra\n")
    assert provenance_recipe(bundle, keys.ecdsa.pub, "ecdsa-p256", tmp_path / "w2").returncode != 0
