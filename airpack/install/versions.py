"""Versions under one prefix: a folder per installed bundle version, and the record that says which is active.

Layout under ``--prefix`` (this module owns it)::

    airpack-install.json      the record (stateVersion 2, written atomically): name, active, previous and
                              ``pending``, the journal of a switch in progress
    .airpack.lock             flock'ed while a command changes the prefix
    audit.log                 one JSON line per verify, install, upgrade, rollback, uninstall, recover
    secrets/api-key           the endpoint's API key, shared by every version (clients keep working)
    current -> versions/<id>  the active version (a convenience; the record is the truth)
    model -> current/model    and deploy -> current/deploy: where people look
    versions/<version>-<12 hex of the bundle digest>/
        state.json            that version's install record (stateVersion 1)
        model/  deploy/       its weights and its rendered deploy files

A switch writes ``pending`` (``{"op", "from", "to", "new", "phase"}``) before it touches a container and clears
it in the same write that makes ``to`` active, so a SIGKILL anywhere leaves either the old version active or a
pending record that the next command undoes (:mod:`airpack.install.lifecycle`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airpack._fs import atomic_write_bytes, fsync_dir
from airpack.errors import InstallError, RefusedError
from airpack.install import host

if TYPE_CHECKING:
    from airpack.progress import Reporter
    from airpack.verify import VerifiedBundle

RECORD_VERSION = 2
VERSIONS_DIR = "versions"
VERSION_STATE = "state.json"
CURRENT = "current"
LINKS = ("model", "deploy")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_id(version: str, digest: str) -> str:
    """``<version>-<12 hex>``: two builds of one version (different digests) get different folders."""
    return f"{version}-{digest[:12]}"


@dataclass(frozen=True)
class Pending:
    """The journal: a switch from ``source`` to ``target`` began and did not finish."""

    op: str  # install, upgrade, rollback
    source: str | None
    target: str
    new: bool  # target was made by this operation (undo removes it) or already installed (undo stops it)
    phase: str
    pid: int = 0
    started: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "from": self.source, "to": self.target, "new": self.new, "phase": self.phase,
                "pid": self.pid, "started": self.started}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pending:
        return cls(op=str(d["op"]), source=d.get("from"), target=str(d["to"]), new=bool(d["new"]),
                   phase=str(d.get("phase", "")), pid=int(d.get("pid") or 0), started=str(d.get("started", "")))


@dataclass(frozen=True)
class Record:
    """``airpack-install.json`` (stateVersion 2). Unknown keys are kept."""

    name: str
    active: str | None = None
    previous: str | None = None
    pending: Pending | None = None
    updated: str = field(default="", compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({"stateVersion": RECORD_VERSION, "name": self.name, "active": self.active,
                    "previous": self.previous, "pending": self.pending.to_dict() if self.pending else None,
                    "updated": self.updated})
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        if d.get("stateVersion") != RECORD_VERSION:
            raise ValueError(f"install record version {d.get('stateVersion')!r} is not {RECORD_VERSION}")
        keys = {"stateVersion", "name", "active", "previous", "pending", "updated"}
        return cls(name=str(d["name"]), active=d.get("active"), previous=d.get("previous"),
                   pending=Pending.from_dict(d["pending"]) if d.get("pending") else None,
                   updated=str(d.get("updated", "")), extra={k: v for k, v in d.items() if k not in keys})


def read_record(prefix: Path) -> Record | None:
    """The record, or None when nothing is installed (a read: nothing is written)."""
    path = prefix / host.STATE_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InstallError(f"{path}: unreadable install record ({exc})",
                           hint="move it aside if this prefix is not an airpack install") from None
    try:
        return Record.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise InstallError(f"{path}: unreadable install record ({exc})",
                           hint="move it aside if this prefix is not an airpack install") from None


def write_record(prefix: Path, record: Record) -> None:
    record = replace(record, updated=now())
    atomic_write_bytes(prefix / host.STATE_FILE, (json.dumps(record.to_dict(), indent=1, sort_keys=True)
                                                  + "\n").encode())


def set_phase(prefix: Path, record: Record, phase: str) -> Record:
    """Record how far the pending switch got (for people and tests; undo does not depend on it)."""
    if record.pending is not None:
        record = replace(record, pending=replace(record.pending, phase=phase))
    write_record(prefix, record)
    return record


def version_dir(prefix: Path, vid: str) -> Path:
    return prefix / VERSIONS_DIR / vid


def read_version(prefix: Path, vid: str) -> host.InstallState | None:
    path = version_dir(prefix, vid) / VERSION_STATE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return host.InstallState.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        raise InstallError(f"{path}: unreadable version record ({exc})") from None


def write_version(prefix: Path, vid: str, state: host.InstallState) -> None:
    atomic_write_bytes(version_dir(prefix, vid) / VERSION_STATE,
                       (json.dumps(state.to_dict(), indent=1, sort_keys=True) + "\n").encode())


def installed(prefix: Path) -> dict[str, host.InstallState]:
    """Every complete version folder (one with its state.json), by id, oldest first."""
    root = prefix / VERSIONS_DIR
    found = {}
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        if not d.name.startswith(".") and (st := read_version(prefix, d.name)) is not None:
            found[d.name] = st
    return dict(sorted(found.items(), key=lambda kv: (host.semver_key(kv[1].version), kv[1].installed)))


def remove_version_dir(prefix: Path, vid: str) -> bool:
    """Delete a version's folder (weights are read-only files in writable folders: rmtree copes)."""
    path = version_dir(prefix, vid)
    if not path.exists():
        return False
    shutil.rmtree(path)
    fsync_dir(path.parent)
    return True


def clean_partials(prefix: Path) -> None:
    """Remove half-copied version folders left by a killed install."""
    root = prefix / VERSIONS_DIR
    for d in root.glob(".*.partial") if root.is_dir() else ():
        shutil.rmtree(d, ignore_errors=True)


def point_current(prefix: Path, vid: str | None) -> None:
    """Make ``current`` (and ``model``, ``deploy`` through it) name ``vid``; atomically (rename of a link)."""
    link = prefix / CURRENT
    if vid is None:
        for name in (CURRENT, *LINKS):
            if (prefix / name).is_symlink():
                (prefix / name).unlink()
        return
    tmp = prefix / f".{CURRENT}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(Path(VERSIONS_DIR) / vid)
    tmp.replace(link)
    for name in LINKS:
        path = prefix / name
        if not path.is_symlink() and not path.exists():
            path.symlink_to(Path(CURRENT) / name)
    fsync_dir(prefix)


@contextlib.contextmanager
def locked(prefix: Path) -> Iterator[Path]:
    """Hold ``<prefix>/.airpack.lock`` (flock, not blocking): one command changes a prefix at a time."""
    import fcntl  # noqa: PLC0415

    prefix.mkdir(parents=True, exist_ok=True)
    path = prefix / ".airpack.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            raise InstallError(f"{prefix}: another airpack command is changing this prefix (pid {holder})",
                               hint="wait for it to finish, then run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the lock; the file stays (removing it would race another locker)


def stage(prefix: Path, vid: str, verified: VerifiedBundle, files: Mapping[str, bytes], reporter: Reporter, *,
          private: frozenset[str] = frozenset(), weights: bool = True) -> None:
    """A new version folder: the weights (copied, re-hashed against the signed sha256; ``weights=False``: none,
    the pods get them from the site registry) and its deploy files go into ``versions/.<id>.partial``, which is
    renamed to ``versions/<id>`` only when complete."""
    model = [e for e in verified.manifest.files if e.kind == "model"] if weights else []
    partial = prefix / VERSIONS_DIR / f".{vid}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if model:
        advance = reporter.task("copying weights", sum(e.size for e in model))
        host.publish_weights(host.stage_weights(verified.path, model, partial, advance), partial)
        reporter.done(advance)
    host.write_deploy(partial, files, private)
    remove_version_dir(prefix, vid)
    partial.rename(version_dir(prefix, vid))


@dataclass(frozen=True)
class Rollback:
    """What a rollback switches between: the record, the two version ids and their install states."""

    record: Record
    active_id: str
    previous_id: str
    active: host.InstallState
    target: host.InstallState


def rollback_pair(prefix: Path, record: Record | None) -> Rollback:
    """The active and previous versions of ``record``, or the ``InstallError`` that says why there is nothing
    to roll back to."""
    if record is None or record.active is None:
        raise InstallError(f"{prefix}: nothing is installed here")
    if record.previous is None:
        raise RefusedError(f"{prefix}: {record.name} has no previous version to roll back to",
                           hint="'airpack status' lists the installed versions")
    active, target = read_version(prefix, record.active), read_version(prefix, record.previous)
    if active is None or target is None:
        raise InstallError(f"{prefix}: the record names versions without a folder", hint="see 'airpack status'")
    return Rollback(record, record.active, record.previous, active, target)
