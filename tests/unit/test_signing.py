"""Keys and signatures: bytes in, bytes out, and checkable with plain OpenSSL."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from airpack.errors import KeyFileError
from airpack.signing import (
    MAX_SIG_BYTES,
    algorithm_of,
    fingerprint,
    keygen,
    load_private_key,
    load_public_key,
    sign_bytes,
    verify_bytes,
)

ALGORITHMS = ["ecdsa-p256", "ed25519"]
ENV_VAR = "AIRPACK_TEST_PASSPHRASE"
DATA = b"0" * 64 + b"  model/model.safetensors\n"


def openssl_fingerprint(pub: Path) -> str:
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"], capture_output=True,
                         check=True, timeout=30).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_keygen_writes_a_0600_key_and_a_public_key(tmp_path: Path, algorithm: str) -> None:
    kp = keygen(tmp_path / "keys", name="k", algorithm=algorithm)
    assert kp.private_path == tmp_path / "keys" / "k.key" and kp.public_path == tmp_path / "keys" / "k.pub"
    assert stat.S_IMODE(kp.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(kp.public_path.stat().st_mode) == 0o644
    assert kp.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert kp.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert kp.fingerprint == openssl_fingerprint(kp.public_path) == fingerprint(load_public_key(kp.public_path))
    assert algorithm_of(load_private_key(kp.private_path)) == algorithm == kp.algorithm
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["k.key", "k.pub"]  # no temp files left


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    kp = keygen(tmp_path)
    before = kp.private_path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite"):
        keygen(tmp_path)
    kp.private_path.unlink()
    with pytest.raises(KeyFileError, match=r"airpack\.pub already exists"):
        keygen(tmp_path)  # a lone public key is not replaced either
    assert not kp.private_path.exists()
    assert before


def test_keygen_rejects_unknown_algorithm(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="unknown algorithm 'rsa'"):
        keygen(tmp_path, algorithm="rsa")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_encrypted_key(tmp_path: Path, algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "correct horse")
    kp = keygen(tmp_path, algorithm=algorithm, passphrase_env=ENV_VAR)
    assert kp.private_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = load_private_key(kp.private_path, passphrase_env=ENV_VAR)
    assert fingerprint(key.public_key()) == kp.fingerprint
    with pytest.raises(KeyFileError, match="the key is encrypted; pass --passphrase-env"):
        load_private_key(kp.private_path)
    monkeypatch.setenv(ENV_VAR, "wrong")
    with pytest.raises(KeyFileError, match="passphrase is wrong"):
        load_private_key(kp.private_path, passphrase_env=ENV_VAR)
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(KeyFileError, match=rf"{ENV_VAR} \(the key passphrase\) is not set"):
        load_private_key(kp.private_path, passphrase_env=ENV_VAR)
    with pytest.raises(KeyFileError, match="is not set"):
        keygen(tmp_path / "other", passphrase_env=ENV_VAR)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sign_and_verify(tmp_path: Path, algorithm: str) -> None:
    kp = keygen(tmp_path, algorithm=algorithm)
    key, pub = load_private_key(kp.private_path), load_public_key(kp.public_path)
    sig = sign_bytes(key, DATA)
    assert sig.endswith(b"\n") and b"\n" not in sig[:-1]
    raw = base64.b64decode(sig.rstrip(), validate=True)
    if algorithm == "ed25519":
        assert len(raw) == 64 and sign_bytes(key, DATA) == sig  # raw and deterministic
    else:
        assert raw[0] == 0x30  # a DER SEQUENCE
    assert verify_bytes(pub, DATA, sig)
    assert verify_bytes(pub, DATA, sig.rstrip())  # whitespace is not significant
    assert not verify_bytes(pub, DATA + b"x", sig)
    assert not verify_bytes(pub, DATA, b"!!not base64!!\n")
    assert not verify_bytes(pub, DATA, base64.b64encode(bytes(len(raw))) + b"\n")
    assert not verify_bytes(pub, DATA, b"A" * (MAX_SIG_BYTES + 1))
    other = keygen(tmp_path / "other", algorithm=algorithm)
    assert not verify_bytes(load_public_key(other.public_path), DATA, sig)


def test_a_signature_of_one_algorithm_does_not_verify_with_the_other(tmp_path: Path) -> None:
    ec_kp, ed_kp = keygen(tmp_path, name="e"), keygen(tmp_path, name="d", algorithm="ed25519")
    assert not verify_bytes(load_public_key(ed_kp.public_path), DATA,
                            sign_bytes(load_private_key(ec_kp.private_path), DATA))
    assert not verify_bytes(load_public_key(ec_kp.public_path), DATA,
                            sign_bytes(load_private_key(ed_kp.private_path), DATA))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_verifies_airpack_signatures(tmp_path: Path, algorithm: str) -> None:
    kp = keygen(tmp_path, algorithm=algorithm)
    (tmp_path / "SUMS").write_bytes(DATA)
    (tmp_path / "s.bin").write_bytes(base64.b64decode(sign_bytes(load_private_key(kp.private_path), DATA)))
    if algorithm == "ed25519":
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(kp.public_path), "-rawin", "-in",
               str(tmp_path / "SUMS"), "-sigfile", str(tmp_path / "s.bin")]
    else:
        cmd = ["openssl", "dgst", "-sha256", "-verify", str(kp.public_path), "-signature", str(tmp_path / "s.bin"),
               str(tmp_path / "SUMS")]
    assert subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0
    (tmp_path / "SUMS").write_bytes(DATA + b"x")
    assert subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode != 0


def _pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("key", [rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                 ec.generate_private_key(ec.SECP384R1())], ids=["rsa", "p384"])
def test_unsupported_key_types_are_refused(tmp_path: Path, key) -> None:
    (tmp_path / "k.key").write_bytes(_pem_private(key))
    (tmp_path / "k.pub").write_bytes(_pem_public(key))
    with pytest.raises(KeyFileError, match="unsupported key type"):
        load_private_key(tmp_path / "k.key")
    with pytest.raises(KeyFileError, match="unsupported key type"):
        load_public_key(tmp_path / "k.pub")


def test_unreadable_and_malformed_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key"):
        load_public_key(tmp_path / "missing.pub")
    (tmp_path / "junk.pub").write_text("not a key\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_private_key(tmp_path / "junk.pub")
    (tmp_path / "huge.pub").write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(KeyFileError, match="too large"):
        load_public_key(tmp_path / "huge.pub")
    kp = keygen(tmp_path)
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(kp.private_path)  # a private key where the public one belongs
