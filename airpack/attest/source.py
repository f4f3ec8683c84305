"""The publisher's own OpenSSF Model Signing signature (NGC, some Hub repos), checked at lock time.

``model.signature: {key: publisher.pub, file: model.sig}`` in the spec: ``airpack lock`` reads the signature
file from the source (it must be among the locked files, so the bundle carries it in ``model/``), checks it
with the publisher's key (ECDSA P-256/384/521, as OMS key mode signs) and compares its resources with the
locked files' sha256 (no weight is downloaded: the lock already has every digest). The locked files must be
exactly the signed ones (the signature file and its ``ignore_paths`` aside), so that
``model_signing verify key BUNDLE/model --signature BUNDLE/model/<file>`` holds for the bundle too. The
verdict is a lock check (``source-signature``) carried in ``airpack.lock`` and ``airpack.json``.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from airpack.attest import oms
from airpack.errors import KeyFileError, SpecError, VerificationError
from airpack.lock import LockedModel
from airpack.signing import fingerprint
from airpack.spec import Spec

MAX_SIGNATURE_BYTES = 16 * 1024 * 1024


def _publisher_key(spec: Spec) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    path = spec.base_dir / str(spec.model.signature_key)
    try:
        key = serialization.load_pem_public_key(path.read_bytes()[:65536])
    except OSError as exc:
        raise KeyFileError(f"model.signature.key: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise KeyFileError(f"model.signature.key: {path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyFileError(f"model.signature.key: {path}: OMS key mode verifies elliptic-curve keys only")
    return key


def _ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore)


def check_source_signature(spec: Spec, model: LockedModel) -> dict[str, Any]:
    """Verify the source's OMS signature against the lock; the lock check to record, or an error."""
    from airpack.sources.small import read_locked_file  # noqa: PLC0415

    name = spec.model.signature_file
    key = _publisher_key(spec)
    locked = {f.path: f for f in model.files}
    if name not in locked:
        raise SpecError(f"model.signature.file: {name!r} is not among the model files locked from the source",
                        hint="check model.files / model.exclude, or name the signature file")
    data = read_locked_file(spec, model, locked[name], cap=MAX_SIGNATURE_BYTES)
    try:
        signed, ignore = oms.signed_resources(data, key)
    except ValueError as exc:
        raise VerificationError(f"model.signature: {name}: {exc}") from None
    files = {p: f.sha256 for p, f in locked.items() if p != name and not _ignored(p, ignore)}
    if why := oms.differs(signed, files):
        raise VerificationError(f"model.signature: {name} does not match the locked files: {why}",
                                hint="lock exactly the files the publisher signed (model.files / model.exclude)")
    return {"name": "source-signature", "status": "pass",
            "message": f"OpenSSF Model Signing signature {name} verified with {fingerprint(key)} over "
                       f"{len(files)} files"}
