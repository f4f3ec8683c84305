"""Keys and signatures over ``SHA256SUMS``: bytes in, bytes out, checkable with plain OpenSSL.

Default ECDSA P-256 with SHA-256, DER-encoded (FIPS-friendly; ``openssl dgst -sha256 -verify`` on 1.1.1 and
3.x). Ed25519 as an option (raw 64-byte signature; ``openssl pkeyutl -verify -rawin`` needs OpenSSL 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from airpack._fs import FileTooLarge, NotRegularFile, atomic_write_bytes, read_capped
from airpack.errors import KeyFileError

ALGORITHMS = ("ecdsa-p256", "ed25519")
MAX_KEY_BYTES = 64 * 1024
MAX_SIG_BYTES = 4096

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class KeyPair:
    """Where ``keygen`` wrote the key pair, and the public key's fingerprint."""

    private_path: Path
    public_path: Path
    fingerprint: str
    algorithm: str


def fingerprint(key: PublicKey) -> str:
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo.

    Reproducible without airpack: ``openssl pkey -pubin -in airpack.pub -outform DER | sha256sum``.
    """
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def algorithm_of(key: PublicKey | PrivateKey) -> str:
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey) else "ecdsa-p256"


def _passphrase(env_var: str | None) -> bytes | None:
    if not env_var:
        return None
    value = os.environ.get(env_var)
    if not value:
        raise KeyFileError(f"environment variable {env_var} (the key passphrase) is not set or empty")
    return value.encode()


def keygen(out_dir: Path, *, name: str = "airpack", algorithm: str = "ecdsa-p256",
           passphrase_env: str | None = None) -> KeyPair:
    """Write ``NAME.key`` (PKCS#8 PEM, mode 0600, encrypted when a passphrase is given) and ``NAME.pub``."""
    if algorithm not in ALGORITHMS:
        raise KeyFileError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    priv_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key")
    secret = _passphrase(passphrase_env)
    key: PrivateKey = (ed25519.Ed25519PrivateKey.generate() if algorithm == "ed25519"
                       else ec.generate_private_key(ec.SECP256R1()))
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(priv_path, pem, mode=0o600)
    atomic_write_bytes(pub_path, pub, mode=0o644)
    return KeyPair(priv_path, pub_path, fingerprint(key.public_key()), algorithm)


def _read_key_file(path: Path) -> bytes:
    try:
        return read_capped(path, MAX_KEY_BYTES)  # no link, no FIFO, no device, nothing larger than a key
    except FileTooLarge:
        raise KeyFileError(f"{path}: too large to be a key") from None
    except NotRegularFile:
        raise KeyFileError(f"{path}: cannot read key: not a regular file (a link, a FIFO or a device)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key: {exc.strerror or exc}") from None


def load_private_key(path: Path, *, passphrase_env: str | None = None) -> PrivateKey:
    """Load a PKCS#8 PEM private key (ECDSA P-256 or Ed25519)."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=_passphrase(passphrase_env))
    except TypeError:
        raise KeyFileError(f"{path}: the key is encrypted; pass --passphrase-env VAR") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM private key, or the passphrase is wrong") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise KeyFileError(f"{path}: unsupported key type; airpack signs with ECDSA P-256 or Ed25519")


def load_public_key(path: Path) -> PublicKey:
    """Load a PEM SubjectPublicKeyInfo public key (ECDSA P-256 or Ed25519)."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise KeyFileError(f"{path}: unsupported key type; airpack verifies ECDSA P-256 or Ed25519")


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """Signature file content: base64 of the DER ECDSA signature or the raw Ed25519 signature, plus newline."""
    raw = key.sign(data) if isinstance(key, ed25519.Ed25519PrivateKey) else key.sign(data, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(raw) + b"\n"


def verify_bytes(key: PublicKey, data: bytes, signature_file: bytes) -> bool:
    """True when ``signature_file`` (base64, as written by ``sign_bytes``) is ``key``'s signature of ``data``."""
    if len(signature_file) > MAX_SIG_BYTES:
        return False
    try:
        raw = base64.b64decode(b"".join(signature_file.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(raw, data)
        else:
            key.verify(raw, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
