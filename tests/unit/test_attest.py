"""OpenSSF Model Signing and SLSA provenance in signed bundles, checked by tools that are not airpack's:
``model_signing`` (1.1.1, offline: this is a unit test and sockets are blocked) verifies ``model.sig`` and
rejects a flipped byte, an added file and a removed file; the provenance envelope is verified here with
``cryptography`` and a hand-written PAE, and its statement read field by field."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

import model_signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from airpack import __version__
from airpack.attest import provenance
from airpack.attest.dsse import sign_statement
from airpack.bundle_layout import Manifest
from airpack.cli import app
from airpack.errors import VerificationError
from airpack.lock import read_lock
from airpack.verify import verify_bundle

MODEL_SIG = "signatures/model.sig"
PROVENANCE = "signatures/provenance.intoto.jsonl"


@pytest.fixture(scope="module")
def pristine(built_bundle, make_model, keys) -> Path:
    return built_bundle(make_model(), key=keys.ecdsa)


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(pristine, dst, symlinks=True)
    return dst


def oms_verify(bundle: Path, pub: Path) -> None:
    """What ``model_signing verify key BUNDLE/model --signature … --public_key PUB`` does."""
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
        bundle / "model", bundle / MODEL_SIG)


def cli(*args: object) -> tuple[int, dict]:
    result = CliRunner().invoke(app, [*map(str, args), "--json"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------------- OMS


def test_model_signing_verifies_the_model_signature(bundle: Path, keys) -> None:
    oms_verify(bundle, keys.ecdsa.pub)
    doc = json.loads((bundle / MODEL_SIG).read_bytes())
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    pem = keys.ecdsa.pub.read_bytes()
    assert doc["verificationMaterial"] == {"publicKey": {"hint": hashlib.sha256(pem).hexdigest()},
                                           "tlogEntries": []}
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["predicate"]["serialization"]["method"] == "files"
    names = sorted(p.relative_to(bundle / "model").as_posix() for p in (bundle / "model").rglob("*"))
    assert [r["name"] for r in statement["predicate"]["resources"]] == names


def test_model_signing_rejects_a_foreign_key(bundle: Path, keys) -> None:
    with pytest.raises(ValueError, match="Key mismatch"):
        oms_verify(bundle, keys.foreign_ecdsa.pub)


def test_model_signing_rejects_a_flipped_byte(bundle: Path, keys) -> None:
    path = bundle / "model" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"Hash mismatch for .{0,4}model\.safetensors"):
        oms_verify(bundle, keys.ecdsa.pub)


def test_model_signing_rejects_an_added_file(bundle: Path, keys) -> None:
    (bundle / "model" / "extra.json").write_text("{}")
    with pytest.raises(ValueError, match=r"Extra files found.*extra\.json"):
        oms_verify(bundle, keys.ecdsa.pub)


def test_model_signing_rejects_a_removed_file(bundle: Path, keys) -> None:
    (bundle / "model" / "config.json").unlink()
    with pytest.raises(ValueError, match=r"Missing files.*config\.json"):
        oms_verify(bundle, keys.ecdsa.pub)


def test_model_signing_rejects_a_forged_statement(bundle: Path, keys) -> None:
    """Edit a resource digest inside the signed payload: the DSSE signature no longer holds."""
    doc = json.loads((bundle / MODEL_SIG).read_bytes())
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"]).replace(b'"sha256"', b'"sha256" ', 1)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    (bundle / MODEL_SIG).write_text(json.dumps(doc))
    with pytest.raises(InvalidSignature):
        oms_verify(bundle, keys.ecdsa.pub)
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    assert [(p.kind, p.path) for p in info.value.problems] == [("bad-attestation", MODEL_SIG)]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- provenance


def pae(payload_type: bytes, payload: bytes) -> bytes:
    return b"DSSEv1 " + str(len(payload_type)).encode() + b" " + payload_type + b" " + \
        str(len(payload)).encode() + b" " + payload


def test_provenance_envelope_verifies_with_cryptography(pristine: Path, keys) -> None:
    bundle = pristine
    lines = (bundle / PROVENANCE).read_bytes().splitlines()
    assert len(lines) == 1
    envelope = json.loads(lines[0])
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    [sig] = envelope["signatures"]
    assert sig["keyid"] == keys.ecdsa.pair.fingerprint
    public = serialization.load_pem_public_key(keys.ecdsa.pub.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(sig["sig"]), pae(b"application/vnd.in-toto+json", payload),
                  ec.ECDSA(hashes.SHA256()))

    st = json.loads(payload)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    sums_sha = hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()
    assert st["subject"] == [{"name": "test-model-1.0.0", "digest": {"sha256": sums_sha},
                              "annotations": {"file": "SHA256SUMS"}}]
    build = st["predicate"]["buildDefinition"]
    assert build["buildType"] == "urn:airpack:buildtype:bundle:v1"
    lock_path = bundle.parent / "airpack.lock"
    assert build["externalParameters"]["lockDigest"] == {"sha256": hashlib.sha256(lock_path.read_bytes()).hexdigest()}
    lock = read_lock(lock_path)
    assert build["externalParameters"]["specDigest"] == {"sha256": lock.spec_digest.removeprefix("sha256:")}
    manifest = json.loads((bundle / "airpack.json").read_bytes())
    assert build["externalParameters"]["spec"] == manifest["spec"]
    assert build["internalParameters"] == {"bundleFormat": "airpack-bundle", "formatVersion": 2}
    # a local model: each file by its sha256, exactly as locked
    assert build["resolvedDependencies"] == [{"name": f"model/{f.path}", "digest": {"sha256": f.sha256}}
                                             for f in lock.model.files]
    run = st["predicate"]["runDetails"]
    assert run["builder"] == {"id": "urn:airpack:builder", "version": {"airpack": __version__}}
    assert run["metadata"] == {"startedOn": manifest["created"]}


def test_verify_reports_both_and_rejects_a_stale_provenance(bundle: Path, keys) -> None:
    vb = verify_bundle(bundle, [keys.ecdsa.public])
    status = dict(vb.attestations)
    assert status[MODEL_SIG].startswith("verified (OpenSSF Model Signing, 3 files)")
    assert status[PROVENANCE].startswith("verified (SLSA v1")
    code, doc = cli("verify", bundle, "--key", keys.ecdsa.pub)
    assert code == 0 and set(doc["data"]["attestations"]) == {MODEL_SIG, PROVENANCE}

    # the provenance of another build, signed by the same key: its subject is not this SHA256SUMS
    sums = (bundle / "SHA256SUMS").read_bytes()
    manifest = Manifest.from_json((bundle / "airpack.json").read_bytes())
    envelope = sign_statement(keys.ecdsa.private, provenance.statement(manifest, sums + b"x"), "k")
    (bundle / PROVENANCE).write_text(json.dumps(envelope.to_dict()) + "\n")
    code, doc = cli("verify", bundle, "--key", keys.ecdsa.pub)
    assert code == 3
    assert [(p["kind"], p["path"]) for p in doc["problems"]] == [("bad-attestation", PROVENANCE)]
    assert "subject is not this bundle" in doc["problems"][0]["detail"]


def test_a_forged_provenance_and_a_planted_file_are_refused(bundle: Path, keys) -> None:
    envelope = json.loads((bundle / PROVENANCE).read_bytes())
    envelope["payload"] = base64.b64encode(base64.b64decode(envelope["payload"]).replace(
        b"test-model", b"evil-model")).decode()
    (bundle / PROVENANCE).write_text(json.dumps(envelope))
    (bundle / "signatures" / "extra.sig").write_text("x")
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    found = {(p.kind, p.path): p.detail for p in info.value.problems}  # type: ignore[attr-defined]
    assert set(found) == {("bad-attestation", PROVENANCE), ("extra", "signatures/extra.sig")}
    assert "does not verify" in found[("bad-attestation", PROVENANCE)]


def test_an_older_bundle_without_attestations_still_verifies(bundle: Path, keys) -> None:
    shutil.rmtree(bundle / "signatures")
    status = dict(verify_bundle(bundle, [keys.ecdsa.public]).attestations)
    assert status == {MODEL_SIG: "absent", PROVENANCE: "absent"}


def test_ed25519_bundles_carry_provenance_but_no_oms_signature(built_bundle, make_model, keys) -> None:
    bundle = built_bundle(make_model(), key=keys.ed25519)
    assert not (bundle / MODEL_SIG).exists()
    status = dict(verify_bundle(bundle, [keys.ed25519.public]).attestations)
    assert status[MODEL_SIG].startswith("not made: OpenSSF Model Signing key mode takes ECDSA keys only")
    assert status[PROVENANCE].startswith("verified")
    envelope = json.loads((bundle / PROVENANCE).read_bytes())
    keys.ed25519.public.verify(base64.b64decode(envelope["signatures"][0]["sig"]),
                               pae(b"application/vnd.in-toto+json", base64.b64decode(envelope["payload"])))


# ------------------------------------------------------------------------------------- sign, inspect, keys


def test_sign_writes_both_and_a_new_key_replaces_them(built_bundle, make_model, keys, tmp_path: Path) -> None:
    bundle = built_bundle(make_model())
    assert not (bundle / "signatures").exists()
    code, _ = cli("sign", bundle, "--key", keys.ecdsa.key)
    assert code == 0
    oms_verify(bundle, keys.ecdsa.pub)
    code, doc = cli("verify", bundle, "--key", keys.ecdsa.pub)
    assert code == 0 and all(v.startswith("verified") for v in doc["data"]["attestations"].values())

    code, _ = cli("sign", bundle, "--key", keys.ed25519.key, "--force")  # re-signed with Ed25519: no stale OMS
    assert code == 0 and not (bundle / MODEL_SIG).exists()
    code, doc = cli("verify", bundle, "--key", keys.ed25519.pub)
    assert code == 0 and doc["data"]["attestations"][PROVENANCE].startswith("verified")


def test_inspect_shows_them(bundle: Path, keys) -> None:
    code, doc = cli("inspect", bundle)
    assert code == 0
    att = doc["data"]["attestations"]
    assert att[MODEL_SIG]["predicateType"] == "https://model_signing/signature/v1.0"
    assert att[MODEL_SIG]["files"] == 3
    assert att[PROVENANCE]["predicateType"] == "https://slsa.dev/provenance/v1"
    assert att[PROVENANCE]["subject"] == hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()
    assert att[PROVENANCE]["keyid"] == keys.ecdsa.pair.fingerprint


def test_several_trusted_keys_and_a_trust_store(bundle: Path, keys, tmp_path: Path) -> None:
    code, doc = cli("verify", bundle, "--key", keys.foreign_ecdsa.pub, "--key", keys.ecdsa.pub)
    assert code == 0 and doc["data"]["key_fingerprint"] == keys.ecdsa.pair.fingerprint
    store = tmp_path / "trust"
    store.mkdir()
    shutil.copy(keys.foreign_ecdsa.pub, store / "old.pub")
    (store / "notes.txt").write_text("not a key")
    code, doc = cli("verify", bundle, "--key", store)
    assert code == 3 and doc["problems"][0]["kind"] == "bad-signature"
    shutil.copy(keys.ecdsa.pub, store / "new.pub")
    code, doc = cli("verify", bundle, "--key", store)
    assert code == 0 and doc["data"]["key_fingerprint"] == keys.ecdsa.pair.fingerprint
    empty = tmp_path / "empty"
    empty.mkdir()
    code, doc = cli("verify", bundle, "--key", empty)
    assert code == 2 and "no *.pub file" in doc["error"]


def test_volumes_carry_and_check_them(built_bundle, make_model, keys, tmp_path: Path) -> None:
    from airpack.volumes import join_volumes, split_bundle, verify_volume

    model = make_model()
    (model / "second.safetensors").write_bytes(bytes(range(256)) * 2000)
    signed = built_bundle(model, key=keys.ecdsa, chunk_size=128 * 1024)
    capacity = 700_000
    vols = [tmp_path / "v" / v.folder_name for v in split_bundle(signed, [keys.ecdsa.public], tmp_path / "v",
                                                                  capacity)]
    assert len(vols) >= 2
    for vol in vols:
        assert (vol / MODEL_SIG).read_bytes() == (signed / MODEL_SIG).read_bytes()
        assert (vol / PROVENANCE).read_bytes() == (signed / PROVENANCE).read_bytes()
        assert sum(p.stat().st_size for p in vol.rglob("*") if p.is_file()) <= capacity
        verify_volume(vol, [keys.ecdsa.public])
    forged = tmp_path / "forged"
    shutil.copytree(vols[0], forged)
    envelope = json.loads((forged / PROVENANCE).read_bytes())
    envelope["payload"] = base64.b64encode(base64.b64decode(envelope["payload"]) + b" ").decode()
    (forged / PROVENANCE).write_text(json.dumps(envelope))
    with pytest.raises(VerificationError, match=r"provenance\.intoto\.jsonl"):
        verify_volume(forged, [keys.ecdsa.public])
    out = tmp_path / "joined"
    assert join_volumes(vols, [keys.ecdsa.public], out).complete
    status = dict(verify_bundle(out, [keys.ecdsa.public]).attestations)
    assert all(v.startswith("verified") for v in status.values())


def test_the_same_statement_as_model_signing_makes(pristine: Path, keys, tmp_path: Path) -> None:
    """model_signing itself signs the bundle's model/ with the same key: the same bytes, the same statement
    (but the order of ``ignore_paths``, which model_signing takes from a set), the same envelope layout."""
    theirs_path = tmp_path / "theirs.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=keys.ecdsa.key).sign(
        pristine / "model", theirs_path)
    theirs, ours = json.loads(theirs_path.read_bytes()), json.loads((pristine / MODEL_SIG).read_bytes())
    assert list(ours) == list(theirs) and list(ours["dsseEnvelope"]) == list(theirs["dsseEnvelope"])
    assert ours["verificationMaterial"] == theirs["verificationMaterial"]
    payloads = [json.loads(base64.b64decode(d["dsseEnvelope"]["payload"])) for d in (theirs, ours)]
    for p in payloads:
        p["predicate"]["serialization"]["ignore_paths"].sort()
    assert payloads[0] == payloads[1]
    assert not (pristine / MODEL_SIG).read_bytes().endswith(b"\n")


def test_inspect_escapes_what_it_cannot_trust(bundle: Path) -> None:
    envelope = json.loads((bundle / PROVENANCE).read_bytes())
    st = json.loads(base64.b64decode(envelope["payload"]))
    st["predicateType"] = "\x1b[32mOK\x1b[0m"
    envelope["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    (bundle / PROVENANCE).write_text(json.dumps(envelope))
    code, doc = cli("inspect", bundle)
    assert code == 0 and doc["data"]["attestations"][PROVENANCE]["predicateType"] == "\\x1b[32mOK\\x1b[0m"


@pytest.mark.parametrize(("signature", "words"), [
    ({"file": "model.sig"}, "model.signature.key: the publisher's public key (PEM) is required"),
    ({"key": "p.pub", "hash": "x"}, "model.signature.hash: unknown key"),
    ("p.pub", "model.signature: must be a mapping"),
])
def test_model_signature_in_the_spec(signature: object, words: str, tmp_path: Path) -> None:
    from airpack.errors import SpecError
    from airpack.spec import parse_spec

    doc = {"apiVersion": "airpack/v1", "name": "m", "version": "1.0.0",
           "model": {"repo": "acme/m", "signature": signature}}
    with pytest.raises(SpecError, match=re.escape(words)):
        parse_spec(doc, tmp_path)
    doc["model"]["signature"] = {"key": "p.pub"}  # type: ignore[index]
    spec = parse_spec(doc, tmp_path)
    assert (spec.model.signature_key, spec.model.signature_file) == ("p.pub", "model.sig")
