"""``<prefix>/audit.log``: one JSON line per verify, install, upgrade, rollback, uninstall and recover.

Each line says when, what (bundle name, version, the digest of its SHA256SUMS, the signing key's fingerprint),
who (user name and uid, host name) and how it ended (``ok``, or ``failed`` with the reason). Lines are appended
with ``O_APPEND`` and fsync'ed one by one, so a crash loses at most the line being written and never an
earlier one.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

from airpack.install.versions import now

AUDIT_FILE = "audit.log"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def entry(action: str, *, name: str, version: str | None, digest: str | None, key_fingerprint: str | None,
          outcome: str = "ok", reason: str | None = None, **more: Any) -> dict[str, Any]:
    """One audit record (pure but for the clock and the user/host look-ups)."""
    out: dict[str, Any] = {
        "time": now(), "action": action, "name": name, "version": version, "digest": digest,
        "keyFingerprint": key_fingerprint, "user": _user(), "uid": os.getuid(), "host": socket.gethostname(),
        "pid": os.getpid(), "outcome": outcome,
    }
    if reason is not None:
        out["reason"] = reason
    out.update({k: v for k, v in more.items() if v is not None})
    return out


def append(prefix: Path, record: dict[str, Any]) -> None:
    """Append one line durably. The log is never rewritten, only appended to."""
    prefix.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
    fd = os.open(prefix / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(prefix: Path) -> list[dict[str, Any]]:
    """Every complete line (a torn last line from a crash is skipped)."""
    try:
        text = (prefix / AUDIT_FILE).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def failed_verification(prefix: Path, bundle: Path, reason: str, digest: str | None = None) -> bool:
    """Note a bundle that failed verification in the audit log of the install at ``prefix``, if there is one
    (an ``airpack-install.json``); a prefix that does not hold an install is never created. Nothing in the
    bundle is trusted, so the line names no version: only the prefix's bundle name, the bundle's path and the
    sha256 of its SHA256SUMS as verification read it (``digest``: what was offered, for comparing with the signed
    one; the file is never read again here, where it may have changed or be a FIFO). The prefix lock is
    taken for the write; while another command holds it the line is appended anyway (``O_APPEND`` lines do not
    interleave). True when a line was written."""
    from airpack.errors import InstallError  # noqa: PLC0415
    from airpack.install import host, versions  # noqa: PLC0415

    prefix = prefix.absolute()
    if not (prefix / host.STATE_FILE).is_file():
        return False
    name = "?"
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((prefix / host.STATE_FILE).read_bytes())
        name = str(data.get("name") or "?") if isinstance(data, dict) else "?"
    line = entry("verify", name=name, version=None, digest=digest, key_fingerprint=None, outcome="failed",
                 reason=reason, bundle=str(bundle.absolute()))
    try:
        with versions.locked(prefix):
            append(prefix, line)
    except InstallError:  # another airpack command holds the prefix
        append(prefix, line)
    return True
