"""Verbs on a bundle or its volumes, either side of the gap: ``verify``, ``split``, ``join``, ``inspect``.

These run on the far side, from the tool/ a bundle carries: nothing here imports a build-only package
(huggingface_hub, gguf, numpy, cyclonedx), and the stages are imported inside the verbs (every command imports
this module). Each verb returns a frozen dataclass whose ``to_dict()`` is the ``data`` of ``airpack <verb>
--json``; progress goes only to the :class:`~airpack.progress.Reporter` given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airpack.api.build_side import trusted_keys
from airpack.progress import Reporter

if TYPE_CHECKING:
    from airpack.signing import PublicKey
    from airpack.verify import VerifiedBundle

NO_LIMIT = 2**62  # one volume holds everything


# ------------------------------------------------------------------------------------------------ verify


@dataclass(frozen=True)
class VerifyResult:
    """A bundle proven whole: ``verified`` is what :func:`airpack.install.install` takes (the types prove that
    verification ran). ``files`` counts ``SHA256SUMS`` too; ``attestations``: what each ``signatures/*`` file
    was found to be."""

    bundle: Path
    name: str
    version: str
    key_fingerprint: str
    sums_sha256: str
    files: int
    bytes: int
    attestations: Mapping[str, str]
    verified: VerifiedBundle = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "name": self.name, "version": self.version,
                "key_fingerprint": self.key_fingerprint, "sums_sha256": self.sums_sha256, "files": self.files,
                "bytes": self.bytes, "attestations": dict(self.attestations)}


@dataclass(frozen=True)
class VolumeVerifyResult:
    """One volume of a split proven whole on its own: ``volume`` of ``count``, holding ``files`` pieces."""

    bundle: Path
    name: str
    version: str
    volume: int
    count: int
    key_fingerprint: str
    files: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "name": self.name, "version": self.version, "volume": self.volume,
                "count": self.count, "key_fingerprint": self.key_fingerprint, "files": self.files,
                "bytes": self.bytes}


def verify(bundle: Path, keys: Sequence[Path | PublicKey], *,
           reporter: Reporter | None = None) -> VerifyResult | VolumeVerifyResult:
    """Prove every byte of a bundle (or of one volume of a split) is what one of ``keys`` signed: public keys,
    PEM files, or folders of ``*.pub``. Raises ``VerificationError`` listing every problem found."""
    from airpack.verify import verify_bundle  # noqa: PLC0415
    from airpack.volumes import is_volume, verify_volume  # noqa: PLC0415

    pubs = trusted_keys(keys)
    if is_volume(bundle):
        vr = verify_volume(bundle, pubs, reporter=reporter)
        return VolumeVerifyResult(bundle, vr.name, vr.version, vr.index, vr.count, vr.key_fingerprint, vr.pieces,
                                  vr.bytes)
    vb = verify_bundle(bundle, pubs, reporter=reporter)
    return VerifyResult(bundle, vb.manifest.name, vb.manifest.version, vb.key_fingerprint, vb.sums_sha256,
                        len(vb.manifest.files) + 1, vb.total_bytes, dict(vb.attestations), vb)


# ------------------------------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitVolume:
    """One volume folder written: ``pieces`` file pieces, ``bytes`` of them."""

    index: int
    folder: Path
    pieces: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "folder": str(self.folder), "pieces": self.pieces, "bytes": self.bytes}


@dataclass(frozen=True)
class SplitResult:
    """``count`` volumes planned, those written this run in ``volumes``; ``from_base``: for a delta split, the
    files left to the base bundle (None: a full split)."""

    out: Path
    count: int
    from_base: tuple[str, ...] | None
    volumes: tuple[SplitVolume, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "count": self.count,
                "fromBase": list(self.from_base) if self.from_base is not None else None,
                "volumes": [v.to_dict() for v in self.volumes]}


def _size(value: int | str) -> int:
    from airpack.volume_format import parse_size  # noqa: PLC0415

    return parse_size(value) if isinstance(value, str) else value


def split(bundle: Path, keys: Sequence[Path | PublicKey], out: Path, *, size: int | str | None = None,
          max_file: int | str | None = None, only: int | None = None, base: Path | None = None,
          reporter: Reporter | None = None) -> SplitResult:
    """Split a verified bundle into volume folders under ``out``, each verifiable on its own. ``size``: one
    volume's capacity (bytes, or ``32GB``, ``4GiB``; default: one volume); ``max_file``: the largest file the
    media take (FAT32: ``4095MiB``); ``only``: write volume N alone; ``base``: a previous bundle (folder or its
    ``SHA256SUMS``) whose files are left out (a delta)."""
    from airpack.delta import split_with_base  # noqa: PLC0415

    pubs = trusted_keys(keys)
    capacity, cap = _size(size) if size else NO_LIMIT, _size(max_file) if max_file else None
    vols = split_with_base(bundle, pubs, out, capacity, base=base, max_file=cap, only=only, reporter=reporter)
    written = [v for v in vols if only is None or v.index == only]
    return SplitResult(out, len(vols), tuple(vols[0].base.files) if vols[0].base else None,
                       tuple(SplitVolume(v.index, out / v.folder_name, len(v.pieces), sum(p.length for p in v.pieces))
                             for v in written))


# -------------------------------------------------------------------------------------------------- join


@dataclass(frozen=True)
class JoinResult:
    """``complete``: the bundle is published at ``out``; else the volumes seen so far, those still
    ``missing``, and how many files are still incomplete."""

    out: Path
    complete: bool
    volumes: tuple[int, ...]
    count: int
    missing: tuple[int, ...]
    missing_files: int
    added_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "complete": self.complete, "volumes": list(self.volumes), "count": self.count,
                "missing": list(self.missing), "missing_files": self.missing_files, "added_bytes": self.added_bytes}


def join(volumes: Sequence[Path], keys: Sequence[Path | PublicKey], out: Path, *, base: Path | None = None,
         reporter: Reporter | None = None) -> JoinResult:
    """Add the volumes' pieces to the bundle being joined at ``out``, each checked as it is copied; resumable
    (volumes may come one run at a time). ``base``: for a delta split, the previous bundle folder."""
    from airpack.delta import join_with_base  # noqa: PLC0415

    pubs = trusted_keys(keys)
    r = join_with_base(volumes, pubs, out, base=base, reporter=reporter)
    return JoinResult(r.out, r.complete, tuple(r.volumes_seen), r.count, tuple(r.missing), r.missing_files,
                      r.added_bytes)


# ----------------------------------------------------------------------------------------------- inspect


@dataclass(frozen=True)
class InspectResult:
    """What a bundle says it contains: read from ``airpack.json`` WITHOUT verifying it (every string escaped).
    ``deploy_diff`` (per target, how install changes the deploy files) is there when asked for, rendered only
    once the signature and the deploy files check out against the keys given (else empty); ``volume`` when the
    folder is a volume of a split."""

    name: str
    version: str
    created: str
    airpack_version: str
    format_version: Any
    signed: bool
    has_checksums: bool
    model: Mapping[str, Any]
    runtime: Any
    target: Any
    images: tuple[Any, ...]
    deploy: tuple[Any, ...]
    plan: Any
    checks: tuple[Any, ...]
    kinds: Mapping[str, Mapping[str, int]]
    total_bytes: int
    attestations: Mapping[str, Any]
    deploy_diff: Mapping[str, str] | None = None
    volume: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "verified": False, "name": self.name, "version": self.version, "created": self.created,
            "airpackVersion": self.airpack_version, "formatVersion": self.format_version, "signed": self.signed,
            "hasChecksums": self.has_checksums, "model": self.model, "runtime": self.runtime, "target": self.target,
            "images": list(self.images), "deploy": list(self.deploy), "plan": self.plan, "checks": list(self.checks),
            "kinds": self.kinds, "totalBytes": self.total_bytes, "attestations": self.attestations}
        if self.deploy_diff is not None:
            d["deployDiff"] = self.deploy_diff
        if self.volume is not None:
            d["volume"] = self.volume
        return d


def inspect(bundle: Path, keys: Sequence[Path | PublicKey] = (), *, diff: bool = False) -> InspectResult:
    """Describe a bundle (or a volume) as it reads, unverified: run :func:`verify` to prove it. With ``diff``,
    also how install changes its deploy files, rendered only after checking them against ``keys``."""
    from airpack.delta import describe_volume  # noqa: PLC0415
    from airpack.describe import describe_bundle  # noqa: PLC0415
    from airpack.volumes import is_volume  # noqa: PLC0415

    d = describe_bundle(bundle, trusted_keys(keys), diff=diff)
    return InspectResult(
        d["name"], d["version"], d["created"], d["airpackVersion"], d["formatVersion"], d["signed"],
        d["hasChecksums"], d["model"], d["runtime"], d["target"], tuple(d["images"]), tuple(d["deploy"]), d["plan"],
        tuple(d["checks"]), d["kinds"], d["totalBytes"], d["attestations"], d.get("deployDiff"),
        describe_volume(bundle) if is_volume(bundle) else None)
