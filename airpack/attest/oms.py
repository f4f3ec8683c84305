"""OpenSSF Model Signing (OMS) signatures over ``model/``, as ``model_signing`` 1.x writes them in key mode.

A Sigstore bundle v0.3 (``application/vnd.dev.sigstore.bundle.v0.3+json``) holding no certificate and no
transparency-log entry, only ``verificationMaterial.publicKey.hint`` (hex SHA-256 of the signer's PEM public
key) and a DSSE envelope over an in-toto statement: predicate ``https://model_signing/signature/v1.0`` with
serialization ``files`` (sha256, no symlinks, git files ignored) and one resource per model file (its path
below ``model/`` and its sha256); the subject is the model folder's name with the SHA-256 of all the resource
digests concatenated in path order. ``model_signing verify key BUNDLE/model --signature
BUNDLE/signatures/model.sig --public_key PUB`` accepts it offline.

It is made from the sha256 airpack already has for each file (no second hash pass). OMS key mode takes
elliptic-curve keys only: an Ed25519-signed bundle carries no ``model.sig`` (verify says so).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airpack.attest.dsse import IN_TOTO_STATEMENT, Envelope, pae, sign_statement
from airpack.signing import PrivateKey, PublicKey

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MODEL_NAME = "model"
# What model_signing ignores by default when it hashes a model folder; recorded as it records them.
IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore")


def supported(key: PrivateKey | PublicKey) -> bool:
    """OMS key mode verifies ECDSA keys only (P-256 here)."""
    return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)


def key_hint(key: PublicKey) -> str:
    """``publicKey.hint``: hex SHA-256 of the PEM SubjectPublicKeyInfo, as model_signing computes it."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _order(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))  # how pathlib.PurePosixPath sorts, which model_signing uses


def statement(files: dict[str, str]) -> bytes:
    """The in-toto statement for ``files`` (path below ``model/`` → sha256 hex), as model_signing lays it out."""
    names = sorted(files, key=_order)
    root = hashlib.sha256(b"".join(bytes.fromhex(files[n]) for n in names)).hexdigest()
    doc = {
        "_type": IN_TOTO_STATEMENT,
        "subject": [{"name": MODEL_NAME, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"algorithm": "sha256", "digest": files[n], "name": n} for n in names],
            "serialization": {"hash_type": "sha256", "ignore_paths": list(IGNORE_PATHS), "method": "files",
                              "allow_symlinks": False},
        },
    }
    return json.dumps(doc, indent=2).encode()


def sign_model(key: PrivateKey, files: dict[str, str]) -> bytes:
    """``signatures/model.sig``: the Sigstore bundle JSON, one line, as model_signing writes it."""
    envelope = sign_statement(key, statement(files), keyid="")
    [(keyid, sig)] = envelope.signatures
    doc = {"mediaType": BUNDLE_MEDIA_TYPE,  # key order and spacing as model_signing writes it
           "verificationMaterial": {"publicKey": {"hint": key_hint(key.public_key())}, "tlogEntries": []},
           "dsseEnvelope": {"payload": base64.b64encode(envelope.payload).decode(),
                            "payloadType": envelope.payload_type,
                            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": keyid}]}}
    return json.dumps(doc, separators=(",", ":")).encode()


def _hash_for(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    """The hash OMS pairs with each curve (P-256: SHA-256, P-384: SHA-384, P-521: SHA-512)."""
    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size,
                                                                                   hashes.SHA256())


def signed_resources(data: bytes, key: ec.EllipticCurvePublicKey) -> tuple[dict[str, str], tuple[str, ...]]:
    """Check an OMS key-mode signature's bytes with ``key``; return its resources (path → sha256 hex) and its
    ``ignore_paths``. ValueError with a one-line reason when it is not ``key``'s valid signature."""
    try:
        doc: Any = json.loads(data)
        if doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise ValueError(f"not a Sigstore bundle v0.3 (mediaType {doc.get('mediaType')!r})")
        hint = (doc["verificationMaterial"].get("publicKey") or {}).get("hint")
        envelope = Envelope.from_dict(doc["dsseEnvelope"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable OMS signature: {exc}") from None
    if hint and hint != key_hint(key):
        raise ValueError("signed by another key (publicKey.hint)")
    message = pae(envelope.payload_type, envelope.payload)
    if not any(_verifies(key, sig, message) for _, sig in envelope.signatures):
        raise ValueError("the DSSE signature does not verify with the trusted key")
    try:
        st = envelope.statement()
        if st.get("predicateType") != PREDICATE_TYPE:
            raise ValueError(f"predicate {st.get('predicateType')!r}, expected {PREDICATE_TYPE}")
        pred = st["predicate"]
        if pred["serialization"].get("method") != "files" or pred["serialization"].get("hash_type") != "sha256":
            raise ValueError("serialization is not 'files' with sha256")
        signed = {str(r["name"]): str(r["digest"]) for r in pred["resources"] if r.get("algorithm") == "sha256"}
        if len(signed) != len(pred["resources"]):
            raise ValueError("a resource is not sha256, or listed twice")
        names = [str(r["name"]) for r in pred["resources"]]
        root = hashlib.sha256(b"".join(bytes.fromhex(signed[n]) for n in names)).hexdigest()
        if len(st["subject"]) != 1 or st["subject"][0]["digest"]["sha256"] != root:
            raise ValueError("the subject digest does not match the resources")
        ignored = tuple(str(p) for p in pred["serialization"].get("ignore_paths") or ())
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"signed but malformed statement: {exc}") from None
    return signed, ignored


def _verifies(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message, ec.ECDSA(_hash_for(key)))
    except InvalidSignature:
        return False
    return True


def check_model_sig(data: bytes, key: PublicKey, files: dict[str, str]) -> str | None:
    """Why ``data`` is not ``key``'s OMS signature of exactly ``files``, or None when it is."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return "signed with a key OMS cannot use (Ed25519): there should be no model.sig"
    try:
        signed, _ = signed_resources(data, key)
    except ValueError as exc:
        return str(exc)
    return differs(signed, files)


def differs(signed: dict[str, str], files: dict[str, str]) -> str | None:
    """Why the signed resources are not exactly ``files``, or None."""
    if signed == files:
        return None
    extra, missing = sorted(set(signed) - set(files)), sorted(set(files) - set(signed))
    if missing:
        return f"{len(missing)} file(s) not signed (first: {missing[0]})"
    if extra:
        return f"{len(extra)} signed file(s) not there (first: {extra[0]})"
    changed = sorted(n for n in files if signed[n] != files[n])
    return f"{len(changed)} file(s) with another sha256 than signed (first: {changed[0]})"
