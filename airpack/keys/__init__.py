"""Where keys come from: a PEM file or a PKCS#11 token for signing; files and trust-store folders for verifying.

``--key`` takes a path or, for signing, an RFC 7512 ``pkcs11:`` URI (``airpack.keys.pkcs11``). For verifying,
``--key`` may be given several times (key rotation: the new key and the old one trusted at once) and may name a
folder: every ``*.pub`` in it is trusted (a trust store).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from airpack.errors import KeyFileError
from airpack.signing import PrivateKey, PublicKey, fingerprint, keygen, load_private_key, load_public_key

PKCS11_SCHEME = "pkcs11:"


def is_token_uri(source: Path | str) -> bool:
    return str(source).startswith(PKCS11_SCHEME)


def _token_module() -> ModuleType:
    """``airpack.keys.pkcs11``, which needs python-pkcs11: a connected-side (``airpack[build]``) dependency, as
    signing happens there; the far side's tool/ leaves it out."""
    try:
        return importlib.import_module("airpack.keys.pkcs11")
    except ImportError as exc:
        raise KeyFileError(f"a pkcs11: key needs the python-pkcs11 package, not installed here ({exc.name})",
                           hint="pip install 'airpack[build]' on the signing machine") from None


def load_signing_key(source: Path | str, *, passphrase_env: str | None = None) -> PrivateKey:
    """A private key from a PEM file, or a handle on one inside a PKCS#11 token (``pkcs11:`` URI)."""
    if is_token_uri(source):
        key: PrivateKey = _token_module().load_token_key(str(source))  # only token users load the binding
        return key
    return load_private_key(Path(source), passphrase_env=passphrase_env)


def load_trusted(sources: Sequence[Path]) -> list[PublicKey]:
    """Every trusted public key: each file named, and every ``*.pub`` of each folder named (sorted)."""
    keys: dict[str, PublicKey] = {}
    for source in sources:
        if source.is_dir():
            files = sorted(p for p in source.iterdir() if p.name.endswith(".pub") and not p.is_dir())
            if not files:
                raise KeyFileError(f"{source}: a trust-store folder with no *.pub file in it")
        else:
            files = [source]
        for path in files:
            key = load_public_key(path)
            keys.setdefault(fingerprint(key), key)
    return list(keys.values())


def make_key_pair(out: Path, *, name: str = "airpack", algorithm: str = "ecdsa-p256",
                  passphrase_env: str | None = None, pkcs11: str | None = None) -> dict[str, str]:
    """``airpack keygen``: a PEM pair in ``out``, or (``pkcs11``: a URI) a pair inside a token and its ``.pub``."""
    if pkcs11 is not None:
        tk = _token_module().keygen_token(pkcs11, out, name=name)
        return {"private_key": tk.uri, "where": "(in the token; it never leaves it)",
                "public_key": str(tk.public_path), "fingerprint": tk.fingerprint, "algorithm": "ecdsa-p256"}
    kp = keygen(out, name=name, algorithm=algorithm, passphrase_env=passphrase_env)
    return {"private_key": str(kp.private_path), "where": "(mode 0600)", "public_key": str(kp.public_path),
            "fingerprint": kp.fingerprint, "algorithm": kp.algorithm}
