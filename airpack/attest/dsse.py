"""DSSE envelopes (Dead Simple Signing Envelope v1) around in-toto statements: bytes in, bytes out.

The signature covers the PAE (pre-authentication encoding) of the payload, never the JSON around it::

    PAE = "DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload

so ``openssl dgst -sha256 -verify PUB -signature SIG PAE`` checks an ECDSA envelope and
``openssl pkeyutl -verify -rawin`` an Ed25519 one, with no airpack and no JSON library (README).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from airpack.signing import PrivateKey, PublicKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT = "https://in-toto.io/Statement/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """The bytes a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def raw_sign(key: PrivateKey, data: bytes) -> bytes:
    """A DER ECDSA-SHA256 signature (what ``openssl dgst -verify`` reads) or a raw Ed25519 one."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def raw_verify(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope: the payload (still bytes: parse it only once a signature checks) and its
    signatures as ``(keyid, raw signature)``."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def to_dict(self) -> dict[str, Any]:
        """Key order fixed (payloadType, payload, signatures[keyid, sig]) so that ``sed`` can pick the fields."""
        return {"payloadType": self.payload_type, "payload": base64.b64encode(self.payload).decode(),
                "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in self.signatures]}

    @classmethod
    def from_dict(cls, d: Any) -> Envelope:
        """Parse; ValueError on anything malformed."""
        if not isinstance(d, dict):
            raise ValueError("not a DSSE envelope (expected a JSON object)")  # noqa: TRY004 - callers catch ValueError
        try:
            sigs = tuple((str(s.get("keyid", "")), base64.b64decode(s["sig"], validate=True))
                         for s in d["signatures"])
            return cls(str(d["payloadType"]), base64.b64decode(d["payload"], validate=True), sigs)
        except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ValueError(f"not a DSSE envelope: {exc}") from None

    def verified_by(self, key: PublicKey) -> bool:
        """True when one of the signatures is ``key``'s over the PAE of the payload."""
        message = pae(self.payload_type, self.payload)
        return any(raw_verify(key, sig, message) for _, sig in self.signatures)

    def statement(self) -> dict[str, Any]:
        """The in-toto statement inside (call only after ``verified_by``); ValueError when it is not one."""
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise ValueError(f"payload type {self.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE}")
        doc = json.loads(self.payload)
        if not isinstance(doc, dict) or doc.get("_type") != IN_TOTO_STATEMENT:
            raise ValueError(f"not an in-toto statement ({IN_TOTO_STATEMENT})")
        return doc


def sign_statement(key: PrivateKey, statement_json: bytes, keyid: str) -> Envelope:
    """Sign an in-toto statement (its exact bytes) into a one-signature envelope."""
    return Envelope(IN_TOTO_PAYLOAD_TYPE, statement_json,
                    ((keyid, raw_sign(key, pae(IN_TOTO_PAYLOAD_TYPE, statement_json))),))
