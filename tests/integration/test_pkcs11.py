"""A signing key that never leaves a PKCS#11 token: a real SoftHSM2 token (Debian ``softhsm2``, its store in a
temporary folder through ``SOFTHSM2_CONF``), the key pair made inside it by ``airpack keygen --pkcs11``, a bundle
built unsigned and signed through the RFC 7512 URI, then checked by airpack, by the OpenSSL + sha256sum recipe
(the token's raw r||s re-encoded as DER), by ``model_signing`` and by the provenance recipe. A wrong PIN and a
missing object each give one clear line and leave the bundle as it was. OpenSC's ``pkcs11-tool`` confirms the
private key is sensitive and never extractable."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_attest_openssl import provenance_recipe
from test_tamper_openssl import recipe

pytestmark = pytest.mark.integration

MODULE_PATHS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
PIN, SO_PIN = "246810", "13579"


def softhsm_module() -> str:
    found = next((p for p in MODULE_PATHS if Path(p).is_file()), None)
    if found is None or not shutil.which("softhsm2-util") or not shutil.which("pkcs11-tool"):
        pytest.fail("SoftHSM2 and OpenSC are test dependencies: apt-get install softhsm2 opensc (scripts/setup.sh)")
    return found


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh token labelled ``airpack`` in a private store; the environment that reaches it."""
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SOFTHSM2_CONF": str(conf), "LC_ALL": "C",
           "AIRPACK_CACHE": str(root / "cache"), "HOME": str(root)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "airpack", "--pin", PIN, "--so-pin",
                    SO_PIN], env=env, check=True, capture_output=True, timeout=60)
    return env


def uri(obj: str = "release", **query: str) -> str:
    q = "&".join([f"module-path={softhsm_module()}", *(f"{k}={v}" for k, v in query.items())])
    return f"pkcs11:token=airpack;object={obj}?{q}"


def airpack(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airpack", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sign_with_a_key_that_never_leaves_the_token(token: dict[str, str], make_model, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    r = airpack("keygen", "--pkcs11", uri(**{"pin-value": PIN}), "--out", keys, env=token)
    assert r.returncode == 0, r.stderr
    pub = keys / "airpack.pub"
    assert "in the token" in r.stdout and not (keys / "airpack.key").exists()
    assert sorted(p.name for p in keys.iterdir()) == ["airpack.pub"]
    listing = subprocess.run(["pkcs11-tool", "--module", softhsm_module(), "--token-label", "airpack", "--login",
                              "--pin", PIN, "--list-objects"], env=token, capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert "Private Key Object; EC" in listing and "label:      release" in listing
    assert "sensitive" in listing and "never extractable" in listing
    again = airpack("keygen", "--pkcs11", uri(**{"pin-value": PIN}), "--out", tmp_path / "k2", env=token)
    assert again.returncode == 2 and "already holds a key 'release'" in again.stderr

    model = make_model()
    spec = tmp_path / "airpack.yaml"
    spec.write_text(f"apiVersion: airpack/v1\nname: hsm-model\nversion: 1.0.0\nmodel:\n  path: {model}\n")
    bundle = tmp_path / "bundle"
    r = airpack("build", spec, "--out", bundle, env=token)
    assert r.returncode == 0 and "UNSIGNED" in r.stdout, r.stdout + r.stderr
    before = snapshot(bundle)

    # a wrong PIN, a missing object: one clear line each, exit 2, nothing written
    for bad, words in ((uri(**{"pin-value": "000000"}), "wrong PIN"), (uri("missing"), "no key 'missing'")):
        r = airpack("sign", bundle, "--key", bad, env={**token, "AIRPACK_PKCS11_PIN": PIN})
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr
        assert PIN not in r.stderr and "000000" not in r.stderr  # the PIN is never echoed
        assert snapshot(bundle) == before

    # the PIN from the environment
    r = airpack("sign", bundle, "--key", uri(), env={**token, "AIRPACK_PKCS11_PIN": PIN})
    assert r.returncode == 0, r.stderr
    r = airpack("verify", bundle, "--key", pub, env=token)
    assert r.returncode == 0, r.stderr
    assert "signatures/model.sig: verified" in r.stdout and "provenance.intoto.jsonl: verified" in r.stdout

    check = recipe(bundle, pub, "ecdsa-p256", tmp_path / "w1")
    assert check.returncode == 0, check.stdout + check.stderr
    check = provenance_recipe(bundle, pub, "ecdsa-p256", tmp_path / "w2")
    assert check.returncode == 0, check.stdout + check.stderr
    ms = subprocess.run([str(Path(sys.executable).with_name("model_signing")), "verify", "key", str(bundle / "model"),
                         "--signature", str(bundle / "signatures/model.sig"), "--public_key", str(pub)],
                        env=token, capture_output=True, text=True, timeout=120, check=False)
    assert ms.returncode == 0 and "Verification succeeded" in ms.stdout + ms.stderr, ms.stdout + ms.stderr

    # after signing, a wrong PIN still changes nothing
    signed = snapshot(bundle)
    r = airpack("sign", bundle, "--key", uri(**{"pin-value": "999999"}), env=token)
    assert r.returncode == 2 and snapshot(bundle) == signed

    # build --key with the URI signs at once
    r = airpack("build", spec, "--out", tmp_path / "b2", "--key", uri(**{"pin-value": PIN}), env=token)
    assert r.returncode == 0 and "signed by sha256:" in r.stdout, r.stdout + r.stderr
    r = airpack("verify", tmp_path / "b2", "--key", pub, env=token)
    assert r.returncode == 0, r.stderr
