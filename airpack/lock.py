"""The lock (``airpack.lock``): everything a build needs, pinned — file sizes and sha256, commit, image digests.

``build`` trusts nothing but the lock: every byte it fetches must hash to what is written here, and a lock
that no longer matches its spec is an error ("run airpack lock again"), never a silent re-resolve.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airpack import __version__
from airpack._fs import (
    FileTooLarge,
    atomic_write_bytes,
    casefold_collisions,
    path_problem,
    read_capped,
    walk_tree,
)
from airpack.errors import LockError, SourceError
from airpack.hashing import FileDigest, hash_file
from airpack.selection import Excluded, select_files
from airpack.spec import Spec
from airpack.tool import LockedTool

LOCK_VERSION = 1
MAX_LOCK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LockedFile:
    """One model file: its path relative to the model folder, size and sha256.

    ``blob_id`` is the git blob id the Hub publishes for small (non-LFS) files, checked as well.
    """

    path: str
    size: int
    sha256: str
    blob_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.blob_id:
            out["blobId"] = self.blob_id
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedFile:
        return cls(str(d["path"]), int(d["size"]), str(d["sha256"]), d.get("blobId"))


@dataclass(frozen=True)
class LockedModel:
    """The model part of the lock. ``source`` is ``local`` (a folder), ``hub`` or ``hf-cache``."""

    source: str
    files: tuple[LockedFile, ...]
    excluded: tuple[Excluded, ...] = ()
    path: str | None = None
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None
    quant: dict[str, Any] | None = None

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "files": [f.to_dict() for f in self.files],
            "excluded": [{"path": e.path, "reason": e.reason} for e in self.excluded],
        }
        for key in ("path", "repo", "revision", "commit", "quant"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedModel:
        return cls(
            source=str(d["source"]),
            files=tuple(LockedFile.from_dict(f) for f in d["files"]),
            excluded=tuple(Excluded(str(e["path"]), str(e["reason"])) for e in d.get("excluded", [])),
            path=d.get("path"),
            repo=d.get("repo"),
            revision=d.get("revision"),
            commit=d.get("commit"),
            quant=d.get("quant"),
        )


@dataclass(frozen=True)
class LockedImage:
    """A container image pinned by manifest digest (and config digest, which is the engine's image ID)."""

    ref: str
    repository: str
    digest: str
    config_digest: str
    platform: str
    role: str = "runtime"
    source: str = "registry"
    tag: str | None = None
    size: int = 0
    media_type: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref, "repository": self.repository, "tag": self.tag, "digest": self.digest,
            "configDigest": self.config_digest, "platform": self.platform, "role": self.role,
            "source": self.source, "size": self.size, "mediaType": self.media_type,
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedImage:
        known = {"ref", "repository", "tag", "digest", "configDigest", "platform", "role", "source", "size",
                 "mediaType"}
        return cls(
            ref=str(d["ref"]), repository=str(d["repository"]), digest=str(d["digest"]),
            config_digest=str(d["configDigest"]), platform=str(d["platform"]), role=str(d.get("role", "runtime")),
            source=str(d.get("source", "registry")), tag=d.get("tag"), size=int(d.get("size", 0)),
            media_type=str(d.get("mediaType", "")), extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass(frozen=True)
class Lock:
    """A resolved spec. ``plan`` and ``checks`` hold the planner's verdict when a runtime is declared."""

    spec_digest: str
    model: LockedModel
    images: tuple[LockedImage, ...] = ()
    plan: dict[str, Any] | None = None
    checks: tuple[dict[str, Any], ...] = ()
    airpack_version: str = __version__
    # The planner's facts about the model (architecture, parameter count, format, quantization), recorded even
    # when the target's memory is not known and there is no plan: the ModelPack config is made of them.
    facts: dict[str, Any] | None = None
    lock_version: int = LOCK_VERSION
    tool: LockedTool | None = None  # the wheels ``tool/`` carries (None: a bundle without the tool)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "lockVersion": self.lock_version,
            "airpackVersion": self.airpack_version,
            "specDigest": self.spec_digest,
            "model": self.model.to_dict(),
            "images": [i.to_dict() for i in self.images],
            "plan": self.plan,
            "checks": list(self.checks),
        }
        if self.tool is not None:
            out["tool"] = self.tool.to_dict()
        if self.facts is not None:
            out["facts"] = self.facts
        return out

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lock:
        version = d.get("lockVersion")
        if version != LOCK_VERSION:
            raise LockError(f"lock format version {version!r} is not supported (this airpack reads {LOCK_VERSION})")
        return cls(
            spec_digest=str(d["specDigest"]),
            model=LockedModel.from_dict(d["model"]),
            images=tuple(LockedImage.from_dict(i) for i in d.get("images", [])),
            plan=d.get("plan"),
            checks=tuple(d.get("checks", [])),
            airpack_version=str(d.get("airpackVersion", "")),
            lock_version=int(version),
            tool=LockedTool.from_dict(d["tool"]) if d.get("tool") is not None else None,
            facts=d["facts"] if isinstance(d.get("facts"), dict) else None,
        )


def default_lock_path(spec_path: Path) -> Path:
    """One lock per spec, beside it: ``qwen.yaml`` locks to ``qwen.lock`` (``airpack.yaml`` to ``airpack.lock``)."""
    return spec_path.with_name(spec_path.stem + ".lock") if spec_path.suffix else spec_path.with_name(
        spec_path.name + ".lock")


def write_lock(lock: Lock, path: Path) -> None:
    atomic_write_bytes(path, lock.to_json())


def read_lock(path: Path) -> Lock:
    """Parse a lock file; malformed content is a ``LockError`` naming the file."""
    try:
        raw = read_capped(path, MAX_LOCK_BYTES, follow_symlinks=True)  # a FIFO or /dev/zero must not hang it
    except FileNotFoundError:
        raise LockError(f"{path}: no lock file", hint="run 'airpack lock' first") from None
    except FileTooLarge:
        raise LockError(f"{path}: too large for a lock file") from None
    except OSError as exc:
        raise LockError(f"{path}: cannot read the lock: {exc.strerror or exc}") from None
    try:
        lock = Lock.from_dict(json.loads(raw))
    except LockError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockError(f"{path}: malformed lock ({type(exc).__name__}: {exc})",
                        hint="run 'airpack lock' again") from None
    for f in lock.model.files:
        problem = path_problem(f.path)
        if problem:
            raise LockError(f"{path}: model file {f.path!r}: {problem}")
    return lock


def check_lock_matches(lock: Lock, spec: Spec, lock_path: Path) -> None:
    """A lock made from another version of the spec is refused, never silently re-resolved."""
    if lock.spec_digest != spec.digest():
        raise LockError(f"{lock_path}: the lock no longer matches the spec (the spec changed since it was locked)",
                        hint="run 'airpack lock' again")


# ------------------------------------------------------------------------------------------ local folders


def list_local_files(folder: Path) -> list[str]:
    """Every regular file below ``folder`` as a relative POSIX path. Symlinks are refused, not followed. The
    walk is iterative: a folder nested thousands deep is listed, not a RecursionError."""
    out: list[str] = []
    for rel, mode in walk_tree(folder):
        if stat.S_ISLNK(mode):
            full = folder / rel
            if rel.rsplit("/", 1)[-1].startswith(".") or rel.startswith(".git/"):
                if not full.is_dir():
                    out.append(rel)
                continue
            raise SourceError(f"{full}: symbolic links are not followed in a model folder",
                              hint="copy the target into the folder, or exclude it")
        if not stat.S_ISDIR(mode):
            out.append(rel)
    return out


def check_bundle_paths(paths: list[str], where: str) -> None:
    """Every path must be portable and safe, with no two differing only in case."""
    for p in paths:
        problem = path_problem(p)
        if problem:
            raise SourceError(f"{where}: {p!r}: {problem}", hint="rename the file or exclude it")
    for a, b in casefold_collisions(paths):
        raise SourceError(f"{where}: {a!r} and {b!r} differ only in case and collide on exFAT/NTFS media")


def lock_local(spec: Spec, digest_of: Any = hash_file) -> LockedModel:
    """Resolve a local-folder model: select files and record each one's size and sha256."""
    folder = spec.model_dir
    assert folder is not None  # noqa: S101 - spec validation guarantees it
    m = spec.model
    sel = select_files(list_local_files(folder), include=m.files, exclude=m.exclude,
                       allow_pickle=m.allow_pickle, allow_code=m.allow_code)
    if not sel.selected:
        raise SourceError(f"model.path: no files selected in {folder}",
                          hint="check model.files and model.exclude")
    check_bundle_paths(list(sel.selected), "model.path")
    files = []
    for rel in sel.selected:
        d: FileDigest = digest_of(folder / rel)
        files.append(LockedFile(rel, d.size, d.sha256))
    return LockedModel(source="local", files=tuple(files), excluded=sel.excluded, path=m.path)
