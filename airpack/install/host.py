"""One version's files: its record (:class:`InstallState`), the API key, copying weights, deploy files.

A version's folder (``<prefix>/versions/<id>/``, laid out by :mod:`airpack.install.versions`) holds::

    state.json             the version's record (an :class:`InstallState`, written atomically, last)
    model/                 the weights, copied and re-hashed from the bundle (never hardlinked)
    deploy/                the bundle's deploy files rendered for this host (what runs, for people to read)

and the prefix holds ``secrets/api-key``, the endpoint's API key (0600, folder 0700), shared by every version.
The functions here take the folder they work in as their ``prefix``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airpack._fs import NotRegularFile, atomic_write_bytes, fsync_dir
from airpack.bundle_layout import MODEL_DIR, Entry
from airpack.errors import InstallError, RefusedError, VerificationError
from airpack.hashing import copy_and_hash

STATE_FILE = "airpack-install.json"
STATE_VERSION = 1
SECRETS_DIR = "secrets"
API_KEY_FILE = f"{SECRETS_DIR}/api-key"
DEPLOY_DIR = "deploy"

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def semver_key(version: str) -> tuple[Any, ...]:
    """A sort key with semver 2.0.0 precedence (a pre-release sorts before its release; build is ignored)."""
    m = _SEMVER.match(version)
    if not m:
        raise InstallError(f"version {version!r} is not semver (MAJOR.MINOR.PATCH)")
    core = tuple(int(g) for g in m.groups()[:3])
    if m.group(4) is None:
        return (*core, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in m.group(4).split("."))
    return (*core, 0, ids)


@dataclass(frozen=True)
class InstallState:
    """``airpack-install.json``: what is installed at a prefix. Unknown keys are kept (``extra``)."""

    name: str
    version: str
    digest: str  # sha256 of the bundle's SHA256SUMS: names exactly what was verified
    key_fingerprint: str
    target: str
    endpoint: str
    container_id: str
    container_name: str
    image_id: str
    image_tags: tuple[str, ...]
    bind: str
    port: int
    network: str
    api_key_file: str | None
    installed: str
    health_url: str = ""
    smoke: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({
            "stateVersion": STATE_VERSION, "name": self.name, "version": self.version, "digest": self.digest,
            "keyFingerprint": self.key_fingerprint, "target": self.target, "endpoint": self.endpoint,
            "containerId": self.container_id, "containerName": self.container_name, "imageId": self.image_id,
            "imageTags": list(self.image_tags), "bind": self.bind, "port": self.port, "network": self.network,
            "apiKeyFile": self.api_key_file, "installed": self.installed, "healthUrl": self.health_url,
            "smoke": self.smoke,
        })
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstallState:
        if d.get("stateVersion") != STATE_VERSION:
            raise ValueError(f"install record version {d.get('stateVersion')!r} is not {STATE_VERSION}")
        keys = {"stateVersion", "name", "version", "digest", "keyFingerprint", "target", "endpoint", "containerId",
                "containerName", "imageId", "imageTags", "bind", "port", "network", "apiKeyFile", "installed",
                "healthUrl", "smoke"}
        return cls(
            name=str(d["name"]), version=str(d["version"]), digest=str(d["digest"]),
            key_fingerprint=str(d["keyFingerprint"]), target=str(d["target"]), endpoint=str(d["endpoint"]),
            container_id=str(d["containerId"]), container_name=str(d["containerName"]),
            image_id=str(d["imageId"]), image_tags=tuple(str(t) for t in d.get("imageTags") or ()),
            bind=str(d["bind"]), port=int(d["port"]), network=str(d["network"]), api_key_file=d.get("apiKeyFile"),
            installed=str(d["installed"]), health_url=str(d.get("healthUrl", "")), smoke=d.get("smoke"),
            extra={k: v for k, v in d.items() if k not in keys},
        )


def check_upgrade(current: InstallState | None, name: str, version: str, *, allow_downgrade: bool) -> None:
    """Refuse another bundle's prefix, and a bundle older than the installed one unless allowed."""
    if current is None:
        return
    if current.name != name:
        raise RefusedError(f"the prefix holds {current.name} {current.version}, not {name}",
                           hint="uninstall it first, or choose another --prefix")
    if semver_key(version) < semver_key(current.version) and not allow_downgrade:
        raise RefusedError(f"{name} {version} is older than the installed {current.version}",
                           hint="pass --allow-downgrade to install it anyway")


def ensure_api_key(prefix: Path) -> tuple[Path, str | None]:
    """The key file (0600, in a 0700 folder); the key itself only when it was made now (printed once)."""
    folder = prefix / SECRETS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = prefix / API_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_size >= 32:
            path.chmod(0o600)
            return path, None  # kept across upgrades: clients keep working
    key = "ap-" + secrets.token_urlsafe(32)
    atomic_write_bytes(path, key.encode() + b"\n", mode=0o600)
    return path, key


def read_api_key(path: Path) -> str:
    return path.read_text().strip()


def _copy_one(src: Path, dst: Path, entry: Entry, progress: Callable[[int], None] | None) -> None:
    """Copy ``src`` to ``dst`` hashing the bytes written; they must be the signed bytes (the medium may lie).

    The hash runs on a second thread from the same buffers (``copy_and_hash``), so the copy goes at the
    slower of the disk and one core's SHA-256, not at their sum."""
    try:
        with dst.open("wb") as out:
            got = copy_and_hash(src, out, progress=progress, limit=entry.size)  # never past the signed size
            out.flush()
            os.fsync(out.fileno())
    except NotRegularFile:
        raise VerificationError(f"{src}: not a regular file any more") from None
    if got.size > entry.size:
        raise VerificationError(
            f"{src}: larger than its signed size of {entry.size} bytes since it was verified (copy stopped there)",
            hint="the medium or the file was modified after 'verify'; copy the bundle again and retry")
    if got.size != entry.size or got.sha256 != entry.sha256:
        raise VerificationError(
            f"{src}: changed since it was verified (read {got.size} bytes, sha256 {got.sha256[:12]}…; "
            f"signed {entry.size} bytes, {entry.sha256[:12]}…)",
            hint="the medium or the file was modified after 'verify'; copy the bundle again and retry")


def stage_weights(bundle: Path, entries: list[Entry], prefix: Path,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Copy the weights into ``<prefix>/.model.partial`` (each file re-hashed against its signed sha256)."""
    stage = prefix / ".model.partial"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        for entry in entries:
            rel = entry.path.removeprefix(f"{MODEL_DIR}/")
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            _copy_one(bundle / entry.path, dst, entry, progress)
            dst.chmod(0o444)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def publish_weights(stage: Path, prefix: Path) -> Path:
    """Swap the staged weights into ``<prefix>/model`` (the old ones go; no container uses them any more)."""
    target = prefix / MODEL_DIR
    old = prefix / ".model.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    stage.rename(target)
    fsync_dir(prefix)
    shutil.rmtree(old, ignore_errors=True)
    return target


def write_deploy(prefix: Path, files: Mapping[str, bytes], private: frozenset[str] = frozenset()) -> list[str]:
    """Replace ``<prefix>/deploy`` with ``files`` (``private`` ones 0600); returns paths relative to the prefix."""
    folder = prefix / DEPLOY_DIR
    shutil.rmtree(folder, ignore_errors=True)
    for rel, data in sorted(files.items()):
        atomic_write_bytes(folder / rel, data, mode=0o600 if rel in private else 0o644)
    return [f"{DEPLOY_DIR}/{rel}" for rel in sorted(files)]


def remove_prefix_files(prefix: Path, *, weights: bool) -> list[str]:
    """Remove what install wrote at ``prefix`` (the weights only when asked); returns what went."""
    gone = []
    for rel in (STATE_FILE, DEPLOY_DIR, SECRETS_DIR, ".model.partial", ".model.old",
                *((MODEL_DIR,) if weights else ())):
        path = prefix / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            gone.append(rel)
        elif path.exists() or path.is_symlink():
            path.unlink()
            gone.append(rel)
    return gone

