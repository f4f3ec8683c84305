"""Verification: a pure function of the bundle's bytes and the trusted keys. It never writes.

Order matters: the signature over ``SHA256SUMS`` is checked first, before anything it covers is parsed;
then ``airpack.json`` is checked against its line in ``SHA256SUMS`` before it is parsed; then every file's
type, size and hash. Every problem is collected and reported, not just the first.

``VerifiedBundle`` can only be made here: the install stage takes one, so the types prove verification ran.
"""

from __future__ import annotations

import functools
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airpack._fs import path_problem, read_capped, walk_tree
from airpack.bundle_layout import (
    ATTESTATIONS,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_SUMS_BYTES,
    SIGNATURE,
    SUMS,
    UNLISTED,
    Entry,
    Manifest,
    parse_sums,
)
from airpack.errors import VerificationError
from airpack.hashing import RangeCheck, chain_checks, check_ranges, sha256_bytes
from airpack.progress import Reporter, Silent
from airpack.signing import PublicKey, fingerprint, verify_bytes
from airpack.textsafe import escape


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle: ``kind`` is a stable word for scripts, ``path`` the file concerned."""

    kind: str
    path: str
    detail: str

    def __post_init__(self) -> None:  # names found in a bundle folder reach the terminal: escape them here
        object.__setattr__(self, "path", escape(self.path))
        object.__setattr__(self, "detail", escape(self.detail))

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "detail": self.detail}


_TOKEN = object()
MAX_ATTESTATION_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every byte matched what the trusted key signed, at the time it was checked."""

    path: Path
    manifest: Manifest
    sums_sha256: str
    key_fingerprint: str
    total_bytes: int
    _token: object
    attestations: tuple[tuple[str, str], ...] = ()  # (path under signatures/, what verify found)

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("VerifiedBundle is only made by airpack.verify.verify_bundle")


def require_folder(path: Path, noun: str) -> None:
    """``path`` must be a real folder (not a link to one): what verification is pointed at."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise VerificationError(f"{path}: no such {noun}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise VerificationError(f"{path}: not a {noun} folder (a symlink or a file)")


def _fail(problems: list[Problem], message: str, sums: bytes | None = None) -> VerificationError:
    return VerificationError(message, problems=tuple(problems),
                             sums_sha256=sha256_bytes(sums) if sums is not None else None)


def _check_signature(bundle: Path, keys: Sequence[PublicKey]) -> tuple[bytes, str]:
    try:
        sums = read_capped(bundle / SUMS, MAX_SUMS_BYTES)
    except FileNotFoundError:
        raise _fail([Problem("missing", SUMS, "the checksum list is missing")], f"{bundle}: no {SUMS}") from None
    except OSError as exc:
        raise _fail([Problem("not-regular-file", SUMS, str(exc))], f"{bundle}: unusable {SUMS}") from None
    try:
        sig = read_capped(bundle / SIGNATURE, 4096)
    except FileNotFoundError:
        raise _fail([Problem("unsigned", SIGNATURE, "the bundle is not signed")],
                    f"{bundle}: not signed", sums) from None
    except OSError as exc:
        raise _fail([Problem("bad-signature", SIGNATURE, str(exc))], f"{bundle}: unusable signature", sums) from None
    for key in keys:
        if verify_bytes(key, sums, sig):
            return sums, fingerprint(key)
    raise _fail([Problem("bad-signature", SIGNATURE, "not a valid signature of SHA256SUMS by a trusted key")],
                f"{bundle}: the signature does not match {SUMS} for the trusted key", sums)


def walk_entries(bundle: Path) -> dict[str, int]:
    """Every entry below ``bundle`` (not following links) → its ``st_mode``; directories are descended
    (iteratively: a hostile tree of any depth is walked without recursion)."""
    return {rel: mode for rel, mode in walk_tree(bundle) if not stat.S_ISDIR(mode)}


def _listed(sums: bytes, problems: list[Problem]) -> dict[str, str]:
    lines, bad = parse_sums(sums)
    for n, why in bad:
        problems.append(Problem("malformed-sums", f"{SUMS}:{n}", why))
    listed: dict[str, str] = {}
    for line in lines:
        unsafe = path_problem(line.path)
        if unsafe or line.path in UNLISTED:
            problems.append(Problem("unsafe-path", line.path, unsafe or "the checksum list cannot list itself"))
        elif line.path in listed:
            problems.append(Problem("duplicate-entry", line.path, f"listed twice ({SUMS} line {line.line})"))
        else:
            listed[line.path] = line.sha256
    return listed


def _load_manifest(bundle: Path, listed: dict[str, str], problems: list[Problem]) -> Manifest | None:
    if MANIFEST not in listed:
        problems.append(Problem("missing", MANIFEST, f"{MANIFEST} is not listed in {SUMS}"))
        return None
    try:
        data = read_capped(bundle / MANIFEST, MAX_MANIFEST_BYTES)
    except OSError:
        return None  # reported by the per-file checks
    if sha256_bytes(data) != listed[MANIFEST]:
        return None  # reported once, by the per-file checks
    try:
        manifest = Manifest.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(Problem("bad-manifest", MANIFEST, f"signed but unreadable: {exc}"))
        return None
    inventory = {e.path: e.sha256 for e in manifest.files}
    expected = {p: h for p, h in listed.items() if p != MANIFEST}
    problems.extend(Problem("manifest-mismatch", path, f"{MANIFEST} and {SUMS} disagree on this file")
                    for path in sorted(set(inventory) | set(expected)) if inventory.get(path) != expected.get(path))
    return manifest


def _check_files(bundle: Path, listed: dict[str, str], manifest: Manifest | None, problems: list[Problem],
                 workers: int | None, reporter: Reporter) -> int:
    found = walk_entries(bundle)
    for rel, mode in sorted(found.items()):
        if rel in UNLISTED and stat.S_ISREG(mode):
            continue
        if rel not in listed:
            kind = "symlink" if stat.S_ISLNK(mode) else "extra"
            problems.append(Problem(kind, rel, "not listed in SHA256SUMS"))
    entries = {e.path: e for e in manifest.files} if manifest else {}
    jobs: list[RangeCheck] = []
    unsized: list[str] = []
    total = 0
    for rel, sha in sorted(listed.items()):
        listed_mode = found.get(rel)
        if listed_mode is None:
            problems.append(Problem("missing", rel, "listed in SHA256SUMS but absent"))
            continue
        if stat.S_ISLNK(listed_mode):
            problems.append(Problem("symlink", rel, "a symbolic link where a file was signed"))
            continue
        if not stat.S_ISREG(listed_mode):
            problems.append(Problem("not-regular-file", rel, "not a regular file"))
            continue
        size = (bundle / rel).lstat().st_size
        entry = entries.get(rel)
        if entry is not None and size != entry.size:
            problems.append(Problem("modified", rel, f"size {size} bytes, signed size {entry.size}"))
            continue
        if rel == MANIFEST and size > MAX_MANIFEST_BYTES:
            problems.append(Problem("modified", rel, f"size {size} bytes, more than a manifest may hold"))
            continue
        if entry is None and rel != MANIFEST:  # no signed size bounds it: a sparse terabyte would be hashed whole
            unsized.append(rel)
            continue
        total += size
        jobs.extend(checks_for(bundle / rel, rel, size, sha, entry))
    if manifest is None and unsized:  # (with a manifest, each is already a manifest-mismatch problem)
        problems.append(Problem("unchecked", MANIFEST, f"{len(unsized)} listed file(s) not hashed: without a "
                                "signed, readable airpack.json no signed size bounds them"))
    advance = reporter.task("verifying", total)
    results = check_ranges(jobs, workers=workers, progress=advance)
    reporter.done(advance)
    problems.extend(Problem("modified", rel, "content does not match its signed sha256")
                    for rel, ok in sorted(results.items()) if not ok)
    return total


def checks_for(path: Path, rel: str, size: int, sha: str, entry: Entry | None) -> list[RangeCheck]:
    """The jobs that prove the file ``rel`` (``size`` bytes, signed ``sha``): per chunk where the inventory
    gives chaining values, else one for the whole file."""
    if entry is not None and entry.chain and entry.sha256 == sha:
        return chain_checks(path, rel, size, sha, entry.chunk_size, entry.chain)
    return [RangeCheck(path, rel, 0, size, sha)]


@dataclass(frozen=True)
class SignedRoot:
    """The signed top of a bundle or of one of its volumes: the exact ``SHA256SUMS`` a trusted key signed,
    its entries, and the manifest they vouch for (its hash checked before it was parsed)."""

    sums: bytes
    key_fingerprint: str
    listed: dict[str, str]
    manifest: Manifest

    @property
    def sums_sha256(self) -> str:
        return sha256_bytes(self.sums)

    @functools.cached_property
    def entries(self) -> dict[str, Entry]:
        """The manifest's inventory by path."""
        return {e.path: e for e in self.manifest.files}


def sig_extras(folder: Path, keys: Sequence[PublicKey], root: SignedRoot) -> list[str]:
    """Problems with the ``signatures/*`` beside a signed root (a volume's copy), as ``path: detail``."""
    problems: list[Problem] = []
    check_attestation_files(folder, keys, root.key_fingerprint, root.sums, root.listed, problems)
    return [f"{p.path}: {p.detail}" for p in problems]


def signed_root(folder: Path, keys: Sequence[PublicKey]) -> SignedRoot:
    """Check the signature and read ``SHA256SUMS`` and ``airpack.json`` of ``folder``; nothing else."""
    if not keys:
        raise VerificationError("no trusted public key given")
    sums, fpr = _check_signature(folder, keys)
    problems: list[Problem] = []
    listed = _listed(sums, problems)
    manifest = _load_manifest(folder, listed, problems)
    if manifest is None and not problems:
        problems.append(Problem("modified", MANIFEST, "content does not match its signed sha256"))
    if problems or manifest is None:
        first = problems[0]
        raise VerificationError(f"{folder}: {first.kind} {first.path}: {first.detail}", problems=tuple(problems))
    return SignedRoot(sums, fpr, listed, manifest)


def verify_bundle(bundle: Path, keys: Sequence[PublicKey], *, workers: int | None = None,
                  reporter: Reporter | None = None) -> VerifiedBundle:
    """Check ``bundle`` against the trusted ``keys``; raise ``VerificationError`` listing every problem."""
    if not keys:
        raise VerificationError("no trusted public key given")
    require_folder(bundle, "bundle")
    sums, fpr = _check_signature(bundle, keys)
    problems: list[Problem] = []
    listed = _listed(sums, problems)
    manifest = _load_manifest(bundle, listed, problems)
    total = _check_files(bundle, listed, manifest, problems, workers, reporter or Silent())
    attestations = check_attestation_files(bundle, keys, fpr, sums, listed, problems)
    if problems or manifest is None:
        problems.sort(key=lambda p: (p.path, p.kind))
        n = len(problems)
        raise VerificationError(f"{bundle}: verification failed: {n} problem{'s' if n != 1 else ''} "
                                f"(first: {problems[0].kind} {problems[0].path})" if problems else
                                f"{bundle}: verification failed", problems=tuple(problems),
                                sums_sha256=sha256_bytes(sums))
    return VerifiedBundle(bundle, manifest, sha256_bytes(sums), fpr, total, _TOKEN, attestations)


def check_attestation_files(bundle: Path, keys: Sequence[PublicKey], fpr: str, sums: bytes, listed: dict[str, str],
                            problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    """``signatures/*`` (not listed in SHA256SUMS): each must be signed by the key that signed ``sums`` (its
    fingerprint ``fpr``) and describe this bundle. Adds to ``problems``; returns the status of each."""
    from airpack.attest import check_attestations  # noqa: PLC0415

    key = next(k for k in keys if fingerprint(k) == fpr)

    found: dict[str, bytes | None] = {}
    for rel in ATTESTATIONS:
        try:
            found[rel] = read_capped(bundle / rel, MAX_ATTESTATION_BYTES)
        except OSError:
            found[rel] = None  # absent, or not a regular file (reported by the per-file checks)
    result = check_attestations(found, key, sums, listed)
    problems.extend(Problem(kind, path, detail) for kind, path, detail in result.problems)
    return result.status


def check_integrity(bundle: Path, *, sums: bytes | None = None, workers: int | None = None,
                    reporter: Reporter | None = None) -> Manifest:
    """The unsigned half of verification, for ``sign``: every file matches ``SHA256SUMS``, nothing extra.

    ``sums``: the ``SHA256SUMS`` bytes already read (the caller signs exactly these); read here when None.
    This proves the bundle is internally consistent before a key vouches for it; it proves nothing about
    who made it.
    """
    if sums is None:
        try:
            sums = read_capped(bundle / SUMS, MAX_SUMS_BYTES)
        except OSError as exc:
            raise VerificationError(f"{bundle}: no readable {SUMS} ({exc}); is this a bundle?") from None
    problems: list[Problem] = []
    listed = _listed(sums, problems)
    manifest = _load_manifest(bundle, listed, problems)
    _check_files(bundle, listed, manifest, problems, workers, reporter or Silent())
    if problems or manifest is None:
        raise VerificationError(f"{bundle}: refusing to sign an inconsistent bundle: {len(problems)} problem(s)",
                                problems=tuple(problems))
    return manifest
