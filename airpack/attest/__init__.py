"""Signatures in the formats the ecosystem checks, written beside ``SHA256SUMS.sig`` whenever a bundle is signed:

- ``signatures/model.sig``: an OpenSSF Model Signing signature over ``model/`` (``airpack.attest.oms``);
- ``signatures/provenance.intoto.jsonl``: SLSA v1 provenance in a DSSE envelope (``airpack.attest.provenance``).

Both are signed with the bundle's key and are not listed in ``SHA256SUMS`` (the provenance names the SHA-256
of ``SHA256SUMS``; the OMS signature signs the model files' digests). ``verify`` checks each with the key that
signed ``SHA256SUMS``: present and wrong is a verification failure; absent is reported (a bundle signed before
airpack wrote them, or an Ed25519 key, which OMS key mode does not take).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from airpack._fs import atomic_write_bytes
from airpack.attest import oms, provenance
from airpack.attest.dsse import Envelope, sign_statement
from airpack.bundle_layout import MODEL_DIR, MODEL_SIG, PROVENANCE, Manifest
from airpack.signing import PrivateKey, PublicKey, fingerprint

VERIFIED = "verified"
ABSENT = "absent"
NOT_MADE_ED25519 = "not made: OpenSSF Model Signing key mode takes ECDSA keys only (this bundle's key is Ed25519)"


def model_files(digests: dict[str, str]) -> dict[str, str]:
    """The ``model/`` files of a path → sha256 map, by their path below ``model/``."""
    prefix = MODEL_DIR + "/"
    return {p.removeprefix(prefix): h for p, h in digests.items() if p.startswith(prefix)}


def write_attestations(bundle: Path, manifest: Manifest, sums: bytes, key: PrivateKey) -> tuple[str, ...]:
    """Write ``signatures/*`` for a bundle whose ``SHA256SUMS`` is ``sums`` (before ``SHA256SUMS.sig``)."""
    written = []
    if oms.supported(key):
        files = model_files({e.path: e.sha256 for e in manifest.files})
        atomic_write_bytes(bundle / MODEL_SIG, oms.sign_model(key, files))
        written.append(MODEL_SIG)
    else:
        with contextlib.suppress(FileNotFoundError):
            (bundle / MODEL_SIG).unlink()  # a stale one from an earlier signing with another key
    envelope = sign_statement(key, provenance.statement(manifest, sums), fingerprint(key.public_key()))
    atomic_write_bytes(bundle / PROVENANCE, (json.dumps(envelope.to_dict(), separators=(",", ":")) + "\n").encode())
    written.append(PROVENANCE)
    return tuple(written)


@dataclass(frozen=True)
class AttestationCheck:
    """What ``verify`` found in ``signatures/``: a status per file, and the problems (kind, path, detail)."""

    status: tuple[tuple[str, str], ...]
    problems: tuple[tuple[str, str, str], ...]


def _check_provenance(data: bytes, key: PublicKey, sums: bytes) -> str | None:
    try:
        envelope = Envelope.from_dict(json.loads(data))
    except ValueError as exc:
        return f"unreadable DSSE envelope: {exc}"
    if not envelope.verified_by(key):
        return "the DSSE signature does not verify with the trusted key"
    try:
        st = envelope.statement()
    except ValueError as exc:
        return f"signed but not an in-toto statement: {exc}"
    return provenance.check_statement(st, sums)


def check_attestations(found: dict[str, bytes | None], key: PublicKey, sums: bytes,
                       listed: dict[str, str]) -> AttestationCheck:
    """Check the attestation files' bytes (``None``: absent) against the key that signed ``sums``."""
    status: list[tuple[str, str]] = []
    problems: list[tuple[str, str, str]] = []
    data = found.get(MODEL_SIG)
    if data is None:
        status.append((MODEL_SIG, ABSENT if oms.supported(key) else NOT_MADE_ED25519))
    else:
        why = oms.check_model_sig(data, key, model_files(listed))
        status.append((MODEL_SIG, why or f"{VERIFIED} (OpenSSF Model Signing, {len(model_files(listed))} files)"))
        if why:
            problems.append(("bad-attestation", MODEL_SIG, why))
    data = found.get(PROVENANCE)
    if data is None:
        status.append((PROVENANCE, ABSENT))
    else:
        why = _check_provenance(data, key, sums)
        status.append((PROVENANCE, why or f"{VERIFIED} (SLSA v1 provenance, subject sha256 of SHA256SUMS)"))
        if why:
            problems.append(("bad-attestation", PROVENANCE, why))
    return AttestationCheck(tuple(status), tuple(problems))


def describe_attestations(found: dict[str, bytes | None]) -> dict[str, dict[str, object]]:
    """What each attestation file says, unverified (for ``inspect``): never trusted, only shown."""
    out: dict[str, dict[str, object]] = {}
    for rel, data in found.items():
        if data is None:
            continue
        try:
            doc = json.loads(data)
            env = Envelope.from_dict(doc["dsseEnvelope"] if rel == MODEL_SIG else doc)
            st = json.loads(env.payload)
            info: dict[str, object] = {"predicateType": st.get("predicateType"),
                                       "subject": st.get("subject", [{}])[0].get("digest", {}).get("sha256")}
            if rel == MODEL_SIG:
                info["files"] = len(st.get("predicate", {}).get("resources", []))
                info["keyHint"] = doc.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
            else:
                info["keyid"] = env.signatures[0][0] if env.signatures else None
                info["builder"] = st.get("predicate", {}).get("runDetails", {}).get("builder", {}).get("version")
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            info = {"error": f"unreadable: {exc}"}
        out[rel] = {k: _printable(v) for k, v in info.items()}
    return out


def _printable(value: object) -> object:
    """Unverified text is shown, never obeyed: control characters (terminal escapes) are escaped."""
    if isinstance(value, str):
        return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value)
    if isinstance(value, dict):
        return {str(_printable(k)): _printable(v) for k, v in value.items()}
    return value
