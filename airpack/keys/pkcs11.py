"""Signing keys that never leave a PKCS#11 token (an HSM, a smart card, SoftHSM2), named by an RFC 7512 URI.

``pkcs11:token=airpack;object=release-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234``:
``token`` (label) and ``object`` (key label, or ``id``) pick the key, ``module-path`` the vendor's library; the
PIN comes from ``pin-value``, ``pin-source=file:PATH`` or the ``AIRPACK_PKCS11_PIN`` environment variable.

``TokenKey`` is a ``cryptography`` ECDSA P-256 private key whose ``sign`` hashes here (SHA-256) and has the
token sign the digest (``CKM_ECDSA``, which every token offers); the token answers raw ``r||s``, which is
re-encoded as DER so that ``openssl dgst -verify`` and every airpack signature format read it unchanged.
Nothing can read the private key out: it is made ``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, unquote_to_bytes

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from airpack._fs import atomic_write_bytes
from airpack.errors import KeyFileError
from airpack.signing import fingerprint

PIN_ENV = "AIRPACK_PKCS11_PIN"
_LIBS: dict[str, Any] = {}  # one loaded module per path: C_Initialize may run once per process


@dataclass(frozen=True)
class TokenUri:
    """The parts of an RFC 7512 URI that airpack uses (the PIN is not kept in ``text``)."""

    text: str
    module: str
    token: str | None
    label: str | None
    key_id: bytes | None
    pin: str | None


def parse_uri(uri: str) -> TokenUri:
    """Parse ``pkcs11:path-attrs?query-attrs``; KeyFileError naming what is missing."""
    if not uri.startswith("pkcs11:"):
        raise KeyFileError(f"{uri!r} is not a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…)")
    body, _, query = uri[len("pkcs11:"):].partition("?")
    attrs: dict[str, str] = {}
    raw_id: bytes | None = None
    for part in filter(None, body.split(";")):
        name, eq, value = part.partition("=")
        if not eq:
            raise KeyFileError(f"PKCS#11 URI: {part!r} is not name=value")
        if name == "id":
            raw_id = unquote_to_bytes(value)
        attrs[name] = unquote(value)
    params = {n: unquote(v) for n, _, v in (p.partition("=") for p in filter(None, query.split("&")))}
    module = params.get("module-path")
    if not module:
        raise KeyFileError("PKCS#11 URI: no module-path (the token's PKCS#11 library, e.g. "
                           "?module-path=/usr/lib/softhsm/libsofthsm2.so)")
    if "object" not in attrs and raw_id is None:
        raise KeyFileError("PKCS#11 URI: name the key with object=LABEL or id=%XX…")
    pin = params.get("pin-value")
    source = params.get("pin-source")
    if pin is None and source:
        path = Path(source.removeprefix("file:"))
        try:
            pin = path.read_text().rstrip("\n")
        except OSError as exc:
            raise KeyFileError(f"PKCS#11 URI: cannot read pin-source {path}: {exc.strerror}") from None
    if pin is None:
        pin = os.environ.get(PIN_ENV) or None
    shown = "pkcs11:" + ";".join(p for p in body.split(";") if not p.startswith("pin-")) + f"?module-path={module}"
    return TokenUri(shown, module, attrs.get("token"), attrs.get("object"), raw_id, pin)


def _lib(module: str) -> Any:
    if module not in _LIBS:
        try:
            _LIBS[module] = pkcs11.lib(module)
        except (p11e.PKCS11Error, RuntimeError, OSError) as exc:
            raise KeyFileError(f"cannot load the PKCS#11 module {module}: {exc}") from None
    return _LIBS[module]


def _fail(uri: TokenUri, exc: p11e.PKCS11Error) -> NoReturn:
    what = {
        p11e.PinIncorrect: "wrong PIN", p11e.PinLocked: "the PIN is locked", p11e.PinLenRange: "wrong PIN",
        p11e.NoSuchToken: f"no token labelled {uri.token!r}", p11e.MultipleTokensReturned: "several tokens match",
        p11e.NoSuchKey: f"no key {uri.label or uri.key_id!r} in the token",
        p11e.MultipleObjectsReturned: f"several keys match {uri.label or uri.key_id!r}: add id=… to the URI",
    }.get(type(exc)) or f"{type(exc).__name__} {exc}".strip()
    raise KeyFileError(f"{uri.text}: {what}") from None


@contextmanager
def _session(uri: TokenUri, *, rw: bool = False) -> Iterator[Any]:
    if uri.pin is None:
        raise KeyFileError(f"{uri.text}: no PIN (add pin-value=… to the URI or set {PIN_ENV})")
    lib = _lib(uri.module)
    try:
        token = lib.get_token(token_label=uri.token) if uri.token else lib.get_token()
        with token.open(rw=rw, user_pin=uri.pin) as session:
            yield session
    except p11e.PKCS11Error as exc:
        _fail(uri, exc)


def _find(session: Any, uri: TokenUri, cls: ObjectClass) -> Any:
    return session.get_key(object_class=cls, key_type=KeyType.EC, label=uri.label, id=uri.key_id)


class TokenKey(ec.EllipticCurvePrivateKey):
    """An ECDSA P-256 key inside a token: ``sign`` works, nothing reads the private value."""

    def __init__(self, uri: TokenUri, public: ec.EllipticCurvePublicKey) -> None:
        self._uri = uri
        self._public = public

    @property
    def uri(self) -> str:
        return self._uri.text

    def sign(self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
             ) -> bytes:
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if isinstance(algorithm, utils.Prehashed) and isinstance(algorithm._algorithm, hashes.SHA256):
            digest = bytes(data)
        elif isinstance(algorithm, hashes.SHA256):
            digest = hashlib.sha256(data).digest()
        else:
            raise KeyFileError(f"{self._uri.text}: airpack signs with ECDSA and SHA-256 only")
        with _session(self._uri) as session:
            raw = _find(session, self._uri, ObjectClass.PRIVATE_KEY).sign(digest, mechanism=Mechanism.ECDSA)
        half = len(raw) // 2  # PKCS#11 answers r||s; OpenSSL and X.509 read DER
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise KeyFileError(f"{self._uri.text}: a signing key; airpack does no key exchange")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise KeyFileError(f"{self._uri.text}: the private key never leaves the token")

    def private_bytes(self, encoding: serialization.Encoding, format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        raise KeyFileError(f"{self._uri.text}: the private key never leaves the token")

    def __copy__(self) -> TokenKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenKey:
        return self


def _public_from(obj: Any, uri: TokenUri) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(encode_ec_public_key(obj))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{uri.text}: not an ECDSA P-256 key; airpack signs with P-256")
    return key


def load_token_key(uri_text: str) -> TokenKey:
    """Log in, find the key pair the URI names, and check it signs (so a wrong PIN fails before any write)."""
    uri = parse_uri(uri_text)
    with _session(uri) as session:
        try:
            public = _public_from(_find(session, uri, ObjectClass.PUBLIC_KEY), uri)
            _find(session, uri, ObjectClass.PRIVATE_KEY)
        except p11e.PKCS11Error as exc:
            _fail(uri, exc)
    return TokenKey(uri, public)


@dataclass(frozen=True)
class TokenKeyPair:
    """What ``keygen --pkcs11`` made: the key pair in the token, its public key written out."""

    uri: str
    public_path: Path
    fingerprint: str


def keygen_token(uri_text: str, out_dir: Path, *, name: str = "airpack") -> TokenKeyPair:
    """Generate an ECDSA P-256 pair inside the token (labelled ``object``), write ``NAME.pub``."""
    uri = parse_uri(uri_text)
    if uri.label is None:
        raise KeyFileError("PKCS#11 URI: keygen needs object=LABEL for the new key")
    pub_path = out_dir / f"{name}.pub"
    if pub_path.exists():
        raise KeyFileError(f"{pub_path} already exists; refusing to overwrite a key")
    with _session(uri, rw=True) as session:
        try:
            _find(session, uri, ObjectClass.PRIVATE_KEY)
        except p11e.NoSuchKey:
            pass
        else:
            raise KeyFileError(f"{uri.text}: the token already holds a key {uri.label!r}; refusing to add another")
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        pub, _ = params.generate_keypair(
            store=True, label=uri.label, id=uri.key_id or secrets.token_bytes(8),
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
        public = _public_from(pub, uri)
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(pub_path, pem)
    return TokenKeyPair(uri.text, pub_path, fingerprint(public))
