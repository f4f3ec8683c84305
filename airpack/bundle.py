"""Build a bundle from a spec and its lock: fetch every byte into a staging folder, hashing as it is written,
then write ``airpack.json`` and ``SHA256SUMS``, sign, and rename the folder into place.

A bundle being written lives at ``.<name>.airpack-partial/bundle`` beside ``--out`` and appears at ``--out``
only when complete (one rename). A killed build leaves nothing that looks like a bundle; a rerun resumes from
the journal of files already written and verified, and produces the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airpack import __version__
from airpack._fs import atomic_write_bytes, fsync_dir, walk_tree
from airpack.bundle_layout import (
    ATTESTATIONS,
    DEPLOY_DIR,
    MANIFEST,
    MODEL_DIR,
    SIGNATURE,
    SUMS,
    Entry,
    Manifest,
    render_sums,
)
from airpack.errors import BuildError, FetchError, LockError, UsageError
from airpack.hashing import FileDigest, copy_and_hash, sha256_bytes
from airpack.lock import Lock, LockedFile
from airpack.progress import Reporter, Silent
from airpack.signing import PrivateKey, fingerprint, sign_bytes
from airpack.spec import Spec
from airpack.tool import WheelSource
from airpack.units import format_size


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` wrote."""

    path: Path
    manifest: Manifest
    sums_sha256: str
    signed_by: str | None
    total_bytes: int


class _Journal:
    """Files already written and checked in an earlier, interrupted run (one JSON line each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    rec = json.loads(line)
                    self.done[rec["path"]] = rec

    def valid(self, rel: str, target: Path) -> FileDigest | None:
        rec = self.done.get(rel)
        try:
            st = target.stat()
        except FileNotFoundError:
            return None
        if not rec or st.st_size != rec["size"] or st.st_mtime_ns != rec["mtime_ns"] or "chain" not in rec:
            return None
        return FileDigest(rec["size"], rec["sha256"], rec["chunk_size"], tuple(rec["chain"]))

    def record(self, rel: str, target: Path, digest: FileDigest) -> None:
        rec = {"path": rel, "size": digest.size, "sha256": digest.sha256, "chunk_size": digest.chunk_size,
               "chain": list(digest.chain), "mtime_ns": target.stat().st_mtime_ns}
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[rel] = rec


def staging_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.airpack-partial"


def _created(lock_digest: str, state_path: Path) -> str:
    """The build time, kept across resumed runs (and SOURCE_DATE_EPOCH for reproducible builds)."""
    if state_path.exists():
        with contextlib.suppress(ValueError, KeyError):
            state = json.loads(state_path.read_text())
            if state["lockDigest"] == lock_digest:
                return str(state["created"])
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else datetime.now(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _prepare_staging(out: Path, lock_digest: str) -> tuple[Path, str]:
    stage = staging_dir(out)
    state_path = stage / "state.json"
    created = _created(lock_digest, state_path)
    if stage.exists():
        try:
            same = json.loads(state_path.read_text())["lockDigest"] == lock_digest
        except (OSError, ValueError, KeyError):
            same = False
        if not same:  # an interrupted build of something else: start over
            shutil.rmtree(stage)
    (stage / "bundle").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(state_path, json.dumps({"lockDigest": lock_digest, "created": created}).encode())
    return stage, created


def _check_against_lock(f: LockedFile, digest: FileDigest, where: str) -> None:
    if digest.size != f.size or digest.sha256 != f.sha256:
        raise FetchError(f"{where}: content differs from the lock (size {digest.size} vs {f.size}, "
                         f"sha256 {digest.sha256[:12]}… vs {f.sha256[:12]}…)",
                         hint="the source changed since it was locked; review it and run 'airpack lock' again")


def _copy_local(spec: Spec, lock: Lock, bundle: Path, journal: _Journal, reporter: Reporter) -> dict[str, FileDigest]:
    src_dir = spec.model_dir
    assert src_dir is not None  # noqa: S101 - a local lock always has a folder
    out: dict[str, FileDigest] = {}
    todo = []
    for f in lock.model.files:
        rel = f"{MODEL_DIR}/{f.path}"
        done = journal.valid(rel, bundle / rel)
        if done is not None and done.sha256 == f.sha256:
            out[rel] = done
        else:
            todo.append(f)
    advance = reporter.task("copying model", sum(f.size for f in todo))
    for f in todo:
        rel = f"{MODEL_DIR}/{f.path}"
        target = bundle / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        try:
            with part.open("wb") as fh:
                digest = copy_and_hash(src_dir / f.path, fh, progress=advance)
                fh.flush()
                os.fsync(fh.fileno())
        except FileNotFoundError:
            raise FetchError(f"model.path: {f.path} is locked but no longer exists in {src_dir}",
                             hint="run 'airpack lock' again") from None
        _check_against_lock(f, digest, f"model file {f.path}")
        part.replace(target)
        journal.record(rel, target, digest)
        out[rel] = digest
    reporter.done(advance)
    return out


def _fetch_model(spec: Spec, lock: Lock, bundle: Path, journal: _Journal, cache_dir: Path,
                 reporter: Reporter) -> dict[str, FileDigest]:
    if lock.model.source == "local":
        return _copy_local(spec, lock, bundle, journal, reporter)
    from airpack.sources import hf  # noqa: PLC0415 - only Hub bundles need huggingface_hub

    digests = hf.fetch_model(lock.model, bundle / MODEL_DIR, cache_dir=cache_dir, reporter=reporter,
                             cache=spec.hf_cache_dir)
    return {f"{MODEL_DIR}/{p}": d for p, d in digests.items()}


def _fetch_images(lock: Lock, bundle: Path, cache_dir: Path, reporter: Reporter) -> tuple[
        dict[str, FileDigest], list[dict[str, Any]]]:
    if not lock.images:
        return {}, []
    from airpack.bundle_images import fetch_all  # noqa: PLC0415 - only bundles with images need the registry client

    return fetch_all(lock.images, bundle, cache_dir=cache_dir, reporter=reporter)


def _render_deploy(spec: Spec, lock: Lock, bundle: Path, images: list[dict[str, Any]]) -> tuple[
        dict[str, FileDigest], list[dict[str, Any]]]:
    if not spec.deploy:
        return {}, []
    from airpack import deploy  # noqa: PLC0415

    files = deploy.render_for_bundle(spec, lock, images)
    digests: dict[str, FileDigest] = {}
    for rel, data in sorted(files.items()):
        path = bundle / DEPLOY_DIR / rel
        atomic_write_bytes(path, data)
        digests[f"{DEPLOY_DIR}/{rel}"] = FileDigest(len(data), sha256_bytes(data))
    return digests, [{"path": f"{DEPLOY_DIR}/{rel}", "target": rel.split("/", 1)[0]} for rel in sorted(files)]


def _write_sbom(spec: Spec, lock: Lock, lock_digest: str, created: str, bundle: Path) -> dict[str, FileDigest]:
    """``sbom/bom.cdx.json``: a CycloneDX inventory of the model and images (listed and signed like the rest)."""
    from airpack.sbom import SBOM_PATH, render_sbom  # noqa: PLC0415 - cyclonedx loads only for a build

    data = render_sbom(spec.name, spec.version, lock, lock_digest, created)
    atomic_write_bytes(bundle / SBOM_PATH, data)
    return {SBOM_PATH: FileDigest(len(data), sha256_bytes(data))}


def _kind(rel: str) -> str:
    return rel.split("/", 1)[0] if "/" in rel else "meta"


def check_space(folder: Path, need: int, what: str, *, hint: str | None = None) -> None:
    """Refuse before writing when ``folder``'s file system has less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if need > free:
        raise BuildError(f"{folder}: {format_size(free)} free, {format_size(need, up=True)} needed for {what}",
                         hint=hint)


def write_sums_and_sign(bundle: Path, sums: bytes, key: PrivateKey | None, *, manifest: Manifest) -> str | None:
    """Write ``SHA256SUMS`` and, when a key is given, ``signatures/*`` (OMS, SLSA provenance: made from
    ``manifest``, which ``sums`` lists) and last ``SHA256SUMS.sig``, each atomically."""
    atomic_write_bytes(bundle / SUMS, sums)
    if key is None:
        return None
    from airpack.attest import write_attestations  # noqa: PLC0415

    write_attestations(bundle, manifest, sums, key)
    atomic_write_bytes(bundle / SIGNATURE, sign_bytes(key, sums))
    return fingerprint(key.public_key())


def build_bundle(spec: Spec, lock: Lock, out: Path, *, key: PrivateKey | None = None, cache_dir: Path,
                 force: bool = False, reporter: Reporter | None = None,
                 tool: WheelSource | None = None) -> BuildResult:
    """Fetch, check against the lock, lay out, hash, sign; the bundle appears at ``out`` only when complete.

    With ``tool`` (where to fetch a wheel the store lacks), ``tool/`` carries the lock's wheels and install.sh."""
    reporter = reporter or Silent()
    if tool is not None and lock.tool is None:
        raise LockError("the lock pins no tool wheels (locked with --no-tool, or by an older airpack)",
                        hint="run 'airpack lock' again, or build with --no-tool")
    if tool is None and lock.tool is not None:
        lock = replace(lock, tool=None)  # the manifest's lock says what this bundle carries
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="choose another --out or pass --force to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: no such folder for --out")
    lock_json = lock.to_json()
    stage, created = _prepare_staging(out, sha256_bytes(lock_json))
    bundle = stage / "bundle"
    journal = _Journal(stage / "journal.jsonl")
    check_space(out.parent, lock.model.total_size - sum(int(r["size"]) for r in journal.done.values())
                + (lock.tool.total_size if lock.tool else 0), "the model files and the tool")

    digests = _fetch_model(spec, lock, bundle, journal, cache_dir, reporter)
    image_digests, images = _fetch_images(lock, bundle, cache_dir, reporter)
    deploy_digests, deploy_files = _render_deploy(spec, lock, bundle, images)
    digests.update(image_digests)
    digests.update(deploy_digests)
    digests.update(_write_sbom(spec, lock, sha256_bytes(lock_json), created, bundle))
    if tool is not None and lock.tool is not None:
        from airpack.tool.write import write_tool  # noqa: PLC0415

        digests.update(write_tool(lock.tool, bundle, cache_dir=cache_dir, source=tool, reporter=reporter))

    entries = tuple(
        Entry(rel, d.size, d.sha256, _kind(rel), d.chunk_size if d.chain else 0, d.chain)
        for rel, d in sorted(digests.items(), key=lambda kv: kv[0].encode())
    )
    manifest = Manifest(
        name=spec.name, version=spec.version, created=created, airpack_version=__version__,
        spec=spec.source, lock=lock.to_dict(), files=entries, images=tuple(images), deploy=tuple(deploy_files),
        plan=lock.plan, checks=lock.checks,
    )
    manifest_bytes = manifest.to_json()
    atomic_write_bytes(bundle / MANIFEST, manifest_bytes)
    sums = render_sums({**{e.path: e.sha256 for e in entries}, MANIFEST: sha256_bytes(manifest_bytes)})
    signed_by = write_sums_and_sign(bundle, sums, key, manifest=manifest)
    _remove_strays(bundle, {e.path for e in entries} | {MANIFEST, SUMS} | (
        {SIGNATURE, *ATTESTATIONS} if signed_by else set()))
    _publish(bundle, out, force)
    shutil.rmtree(stage, ignore_errors=True)
    return BuildResult(out, manifest, sha256_bytes(sums), signed_by, sum(e.size for e in entries))


def _remove_strays(bundle: Path, keep: set[str]) -> None:
    """Delete what an interrupted earlier run left in the staging folder and this run did not write (an atomic
    write's temporary file, a file of another key's signature), so the published bundle holds only its files."""
    found = list(walk_tree(bundle))
    for rel, mode in found:
        if not stat.S_ISDIR(mode) and rel not in keep:
            (bundle / rel).unlink()
    for rel, mode in reversed(found):  # deepest first: folders left empty by the above
        if stat.S_ISDIR(mode) and not any((bundle / rel).iterdir()):
            (bundle / rel).rmdir()


def _publish(bundle: Path, out: Path, force: bool) -> None:
    """Move the finished staging folder to ``out`` with one rename; with --force, the old one goes after."""
    old = None
    if out.exists() and force:
        old = out.with_name(f".{out.name}.airpack-old-{int(time.time())}")
        out.rename(old)
    bundle.rename(out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
