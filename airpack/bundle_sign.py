"""``airpack sign``: vouch for a built bundle with a private key, signing exactly the bytes that were checked.

``SHA256SUMS`` is read once (capped, never through a link, never blocking on a FIFO); the bundle is checked
against those bytes, and those same bytes, from memory, are signed and written back with the signature. Whoever
can write to the bundle's medium meanwhile cannot get other content signed: a list swapped after the read is
replaced by the one that was checked.

A bundle that already carries a signature is refused unless ``force`` is given, and the refusal says whose it
is: the fingerprint of the key it verifies against (the signing key's own public key or one of ``known``), or
that it is by a key not given (the signature file records no key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airpack._fs import read_capped
from airpack.bundle import write_sums_and_sign
from airpack.bundle_layout import MAX_SUMS_BYTES, SIGNATURE, SUMS
from airpack.errors import AlreadySignedError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.progress import Reporter
from airpack.signing import MAX_SIG_BYTES, PrivateKey, PublicKey, fingerprint, verify_bytes
from airpack.verify import check_integrity, require_folder


@dataclass(frozen=True)
class SignResult:
    """What ``sign_bundle`` signed: the bundle, the key's fingerprint, the sha256 of the exact ``SHA256SUMS``
    bytes signed, and whose signature it replaced (``None`` when the bundle was unsigned)."""

    bundle: Path
    key_fingerprint: str
    sums_sha256: str
    replaced: str | None = None


def existing_signer(sums: bytes, signature: bytes, keys: Sequence[PublicKey]) -> str:
    """Who signed ``sums``: the fingerprint of the first of ``keys`` the signature verifies against, else
    ``"an unknown key"`` (a signature file names no key; one that does not verify is by no key given)."""
    for key in keys:
        if verify_bytes(key, sums, signature):
            return fingerprint(key)
    return "an unknown key"


def _existing_signature(bundle: Path, force: bool) -> bytes | None:
    """The signature file's bytes; None when there is none; empty when something unusable is there."""
    path = bundle / SIGNATURE
    try:
        return read_capped(path, MAX_SIG_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a link, a FIFO, an oversized file: something is there all the same
        if force:
            return b""
        raise AlreadySignedError(f"{path}: already present and unusable ({exc})",
                                 hint="remove it, or pass --force to replace it") from None


def sign_bundle(bundle: Path, key: PrivateKey, *, force: bool = False, known: Sequence[PublicKey] = (),
                workers: int | None = None, reporter: Reporter | None = None) -> SignResult:
    """Check ``bundle`` against one read of its ``SHA256SUMS`` and sign exactly those bytes with ``key``."""
    require_folder(bundle, "bundle")
    try:
        sums = read_capped(bundle / SUMS, MAX_SUMS_BYTES)
    except OSError as exc:
        raise VerificationError(f"{bundle}: no readable {SUMS} ({exc}); is this a bundle?") from None
    replaced = None
    old = _existing_signature(bundle, force)
    if old is not None:
        replaced = existing_signer(sums, old, [key.public_key(), *known])
        if not force:
            raise AlreadySignedError(f"{bundle}: already signed by {replaced}",
                                     hint="pass --force to replace the signature")
    manifest = check_integrity(bundle, sums=sums, workers=workers, reporter=reporter)
    fpr = write_sums_and_sign(bundle, sums, key, manifest=manifest)
    assert fpr is not None  # noqa: S101 - a key was given
    return SignResult(bundle, fpr, sha256_bytes(sums), replaced)
