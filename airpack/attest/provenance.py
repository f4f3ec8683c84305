"""SLSA v1 provenance for a bundle: an in-toto statement (predicate ``https://slsa.dev/provenance/v1``).

- subject: the bundle, named ``<name>-<version>`` with the SHA-256 of its ``SHA256SUMS`` (which names every
  other file's hash), so the statement cannot be listed in ``SHA256SUMS`` itself;
- ``buildDefinition.externalParameters``: the spec as written, and the spec's and the lock's digests;
- ``resolvedDependencies``: the model (a Hub repo at its commit, or each file of a local folder by sha256),
  every image by manifest digest, and every ``tool/`` file (wheels) by sha256;
- ``runDetails.builder``: airpack and the version that built the bundle.

Made from ``airpack.json`` (already checked against ``SHA256SUMS``) and the exact ``SHA256SUMS`` bytes.
"""

from __future__ import annotations

import json
from typing import Any

from airpack.attest.dsse import IN_TOTO_STATEMENT
from airpack.bundle_layout import Manifest
from airpack.hashing import sha256_bytes

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:airpack:buildtype:bundle:v1"
BUILDER_ID = "urn:airpack:builder"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def lock_digest(manifest: Manifest) -> str:
    """The lock file's sha256, as ``airpack lock`` wrote it (the manifest holds the lock's JSON form)."""
    return sha256_bytes((json.dumps(manifest.lock, indent=2, sort_keys=True) + "\n").encode())


def _model_deps(manifest: Manifest) -> list[dict[str, Any]]:
    model = manifest.lock.get("model") or {}
    if model.get("source") != "local" and model.get("repo"):  # "hub" or "hf-cache"
        namespace, _, name = str(model["repo"]).rpartition("/")
        purl = f"pkg:huggingface/{namespace + '/' if namespace else ''}{name}@{model.get('commit')}"
        return [{"name": "model", "uri": purl, "digest": {"gitCommit": str(model.get("commit"))},
                 "annotations": {"repo": model["repo"], "revision": model.get("revision")}}]
    return [{"name": f"model/{f['path']}", "digest": {"sha256": f["sha256"]}} for f in model.get("files", [])]


def _image_deps(manifest: Manifest) -> list[dict[str, Any]]:
    out = []
    for img in (manifest.lock.get("images") or []):
        pinned = str(img.get("digest") or img.get("configDigest"))
        repository = str(img.get("repository") or img.get("ref"))
        out.append({"name": str(img.get("ref")), "uri": f"oci://{repository}@{pinned}",
                    "digest": {"sha256": _hex(pinned)},
                    "annotations": {"platform": img.get("platform"), "role": img.get("role")}})
    return out


def _tool_deps(manifest: Manifest) -> list[dict[str, Any]]:
    return [{"name": e.path, "digest": {"sha256": e.sha256}} for e in manifest.files if e.kind == "tool"]


def statement(manifest: Manifest, sums: bytes) -> bytes:
    """The provenance statement's exact bytes (compact JSON, keys sorted: reproducible)."""
    doc = {
        "_type": IN_TOTO_STATEMENT,
        "subject": [{"name": f"{manifest.name}-{manifest.version}", "digest": {"sha256": sha256_bytes(sums)},
                     "annotations": {"file": "SHA256SUMS"}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "spec": manifest.spec,
                    "specDigest": {"sha256": _hex(str(manifest.lock.get("specDigest", "")))},
                    "lockDigest": {"sha256": lock_digest(manifest)},
                },
                "internalParameters": {"bundleFormat": "airpack-bundle", "formatVersion": manifest.format_version},
                "resolvedDependencies": _model_deps(manifest) + _image_deps(manifest) + _tool_deps(manifest),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"airpack": manifest.airpack_version}},
                "metadata": {"startedOn": manifest.created},
            },
        },
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def check_statement(st: dict[str, Any], sums: bytes) -> str | None:
    """Why a (signature-checked) statement is not this bundle's provenance, or None."""
    try:
        if st.get("predicateType") != PREDICATE_TYPE:
            return f"predicate {st.get('predicateType')!r}, expected {PREDICATE_TYPE}"
        subjects = st["subject"]
        if len(subjects) != 1 or subjects[0]["digest"]["sha256"] != sha256_bytes(sums):
            return "its subject is not this bundle (the sha256 of SHA256SUMS differs)"
    except (KeyError, TypeError, IndexError) as exc:
        return f"signed but malformed statement: {exc}"
    return None
