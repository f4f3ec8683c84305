"""The far side's view of the tool: which Pythons this host has, and whether the bundle's ``tool/`` can be
installed with one of them (``airpack doctor``). The same search as ``tool/install.sh``: python3.13, python3.12,
python3.11, then python3 on PATH."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from airpack.tool import PYTHONS, LockedTool

CANDIDATES = ("python3.13", "python3.12", "python3.11", "python3")


@dataclass(frozen=True)
class HostPython:
    command: str
    path: str
    version: str  # "3.12"


def host_pythons() -> tuple[HostPython, ...]:
    """Every candidate on PATH that runs, with its version (one per resolved path)."""
    out: list[HostPython] = []
    for cmd in CANDIDATES:
        path = shutil.which(cmd)
        if path is None or any(p.path == path for p in out):
            continue
        try:
            proc = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            out.append(HostPython(cmd, path, proc.stdout.strip()))
    return tuple(out)


def tool_of(lock: dict[str, Any]) -> LockedTool | None:
    """The tool a bundle's manifest says it carries (its ``lock.tool``), or None."""
    raw = lock.get("tool")
    if not isinstance(raw, dict):
        return None
    try:
        return LockedTool.from_dict(raw)
    except (ValueError, KeyError, TypeError):
        return None


def python_verdict(found: tuple[HostPython, ...], tool: LockedTool | None, bundle: bool) -> tuple[
        str, str, str | None]:
    """(status, detail, fix) for doctor's ``python`` check: pass or warn, never fail (the airpack running it is
    installed already; the check says whether ``sh tool/install.sh`` would work here)."""
    names = ", ".join(f"{p.command} {p.version} ({p.path})" for p in found) or "none on PATH"
    pythons = tool.pythons if tool else PYTHONS
    usable = [p for p in found if p.version in pythons]
    fix = ("install python3.11 (RHEL 9, Ubuntu 22.04) or python3 (Debian 12, Ubuntu 24.04)"
           + (", or rebuild with target.python listing this host's version" if tool else ""))
    if tool is None:
        note = "; the bundle carries no tool/ (built with --no-tool)" if bundle else ""
        return ("pass" if usable else "warn"), f"host Python: {names}{note}", None if usable else fix
    if usable:
        return "pass", (f"host Python: {names}; the bundle's tool ({tool.platform}, CPython "
                        f"{' '.join(tool.pythons)}) installs with {usable[0].path}"), None
    return "warn", f"host Python: {names}; the bundle's tool needs CPython {' '.join(tool.pythons)}", fix
