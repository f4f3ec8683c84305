"""``airpack inspect``: what a bundle says it is. This reads ``airpack.json`` without verifying it, and says so:
capped and never through a link or a FIFO, every string escaped (``airpack.textsafe``), no template rendered."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airpack._fs import read_capped
from airpack.bundle_layout import ATTESTATIONS, MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, SUMS, Manifest
from airpack.errors import UsageError
from airpack.signing import PublicKey
from airpack.textsafe import escape_tree


def unverified_manifest(bundle: Path) -> Manifest:
    """``airpack.json`` as found (for ``inspect`` and ``doctor BUNDLE``): read capped, never through a link or a
    FIFO; a ``UsageError`` when it is not there or not a manifest."""
    path = bundle / MANIFEST
    try:
        return Manifest.from_json(read_capped(path, MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        raise UsageError(f"{bundle}: no {MANIFEST}; not an airpack bundle") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: unreadable bundle manifest: {exc}") from None


def describe_bundle(bundle: Path, keys: Sequence[PublicKey] = (), *, diff: bool = False) -> dict[str, Any]:
    """A summary of the bundle's manifest: name, version, model, files by kind, images, deploy files; with
    ``diff``, ``deployDiff`` too: per target, how install changes the deploy files, rendered only once the
    signature (by one of ``keys``), ``airpack.json`` and each deploy file check out (empty without ``keys``)."""
    manifest = unverified_manifest(bundle)
    kinds: dict[str, dict[str, int]] = {}
    for e in manifest.files:
        k = kinds.setdefault(e.kind, {"files": 0, "bytes": 0})
        k["files"] += 1
        k["bytes"] += e.size
    model = manifest.lock.get("model", {})
    described: dict[str, Any] = escape_tree({  # unverified text from the medium: no control character passes
        "verified": False,
        "name": manifest.name,
        "version": manifest.version,
        "created": manifest.created,
        "airpackVersion": manifest.airpack_version,
        "formatVersion": manifest.format_version,
        "signed": (bundle / SIGNATURE).exists(),
        "hasChecksums": (bundle / SUMS).exists(),
        "model": {k: model.get(k) for k in ("source", "path", "repo", "revision", "commit", "quant")
                  if model.get(k) is not None} | {"files": [
                      {"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in model.get("files", [])],
                      "excluded": model.get("excluded", [])},
        "runtime": manifest.spec.get("runtime"),
        "target": manifest.spec.get("target", {}),
        "images": list(manifest.images),
        "deploy": list(manifest.deploy),
        "plan": manifest.plan,
        "checks": list(manifest.checks),
        "kinds": kinds,
        "totalBytes": sum(e.size for e in manifest.files),
        "attestations": _attestations(bundle),
    })
    if diff:
        from airpack.install.deploy_files import bundle_deploy_diff  # noqa: PLC0415 - install code only when asked

        described["deployDiff"] = bundle_deploy_diff(bundle, keys) if described["deploy"] and keys else {}
    return described


def _attestations(bundle: Path) -> dict[str, dict[str, object]]:
    """``signatures/*`` as they read (unverified): OMS model signature, SLSA provenance."""
    from airpack.attest import describe_attestations  # noqa: PLC0415
    from airpack.verify import MAX_ATTESTATION_BYTES  # noqa: PLC0415

    found: dict[str, bytes | None] = {}
    for rel in ATTESTATIONS:
        try:
            found[rel] = read_capped(bundle / rel, MAX_ATTESTATION_BYTES)
        except OSError:
            found[rel] = None
    return describe_attestations(found)
