"""A bundle's signed ``deploy/`` files, read again at install (the medium may lie on a second read: each file is
re-hashed against its signed sha256, read capped, never through a link) and diffed from the as-built defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from airpack._fs import read_capped
from airpack.bundle_layout import Entry, Manifest
from airpack.errors import InstallError, VerificationError
from airpack.hashing import sha256_bytes
from airpack.install import host, targets, versions
from airpack.install.images import weights_params
from airpack.profiles.context import DeployContext
from airpack.render import TRIAL_DIGEST, HostParams, default_host_params, host_diff
from airpack.signing import PublicKey
from airpack.spec_kubernetes import signed_weights_mode

if TYPE_CHECKING:
    from airpack.install.targets.base import Target
    from airpack.verify import VerifiedBundle

MAX_DEPLOY_FILE = 16 * 1024 * 1024


def read_signed(bundle: Path, entry: Entry) -> bytes:
    try:
        data = read_capped(bundle / entry.path, MAX_DEPLOY_FILE)  # no link, no FIFO, at most a deploy file
    except OSError as exc:
        raise VerificationError(f"{bundle / entry.path}: changed since it was verified ({exc})",
                                hint="copy the bundle again and retry") from None
    if len(data) != entry.size or sha256_bytes(data) != entry.sha256:
        raise VerificationError(f"{bundle / entry.path}: changed since it was verified",
                                hint="copy the bundle again and retry")
    return data


def signed_deploy(bundle: Path, manifest: Manifest) -> dict[str, bytes]:
    """Every deploy file of the bundle, by its path relative to ``deploy/``, each checked against its hash."""
    return {e.path.removeprefix("deploy/"): read_signed(bundle, e) for e in manifest.files if e.kind == "deploy"}


def bundle_deploy_diff(bundle: Path, keys: Sequence[PublicKey]) -> dict[str, str]:
    """For ``airpack inspect --key``: per target the bundle has files for, the diff from the as-built defaults
    to an install with airpack's defaults (host network, an API key file). Nothing unverified is rendered: the
    signature and ``airpack.json`` are checked first (not the weights), and each deploy file against its signed
    hash, read capped and never through a link."""
    from airpack.verify import signed_root  # noqa: PLC0415

    m = signed_root(bundle, keys).manifest
    signed = signed_deploy(bundle, m)
    gpus = int((m.spec.get("target") or {}).get("gpus") or 0)
    slug = re.sub(r"[^a-z0-9-]+", "-", m.name.lower()).strip("-")[:40].strip("-")
    out: dict[str, str] = {}
    for name, target in targets.TARGETS.items():
        if "--show-diff" not in target.flags:  # a target that writes no deploy files has nothing to diff
            continue
        with contextlib.suppress(InstallError):
            chosen = target.deploy_files(signed)
            registry = "registry.local" if target.needs_registry else None
            # The weights' digests are the same on both sides (not part of the diff): no hash pass for inspect.
            base = default_host_params(slug, gpus=gpus, registry="registry.invalid" if registry else None,
                                       model_digest=TRIAL_DIGEST, weights_digest=TRIAL_DIGEST,
                                       weights=signed_weights_mode(m.spec))
            params = dataclasses.replace(
                base, network="host", registry=registry, api_key_file=f"{base.prefix}/{host.API_KEY_FILE}"
            )
            out[name] = host_diff(chosen, params, base)
    return out


def host_params(verified: VerifiedBundle, ctx: DeployContext, target: Target, prefix: Path, *, port: int,
                bind: str, network: str, registry: str | None, api_key: bool, gpus: int | None = None,
                weights: str | None = None) -> HostParams:
    """The host parameters an install at ``prefix`` renders this bundle's deploy files with (render uses the
    same): the version's folder, the key file under the prefix, and how Kubernetes pods get the weights."""
    vid = versions.version_id(verified.manifest.version, verified.sums_sha256)
    return HostParams(prefix=str(versions.version_dir(prefix, vid)), port=port, bind=bind,
                      gpus=ctx.gpus if gpus is None else gpus, network=network, registry=registry,
                      api_key_file=str(prefix / host.API_KEY_FILE) if api_key else None,
                      **weights_params(verified, target, weights or ctx.kubernetes.weights))
