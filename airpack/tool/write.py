"""Write ``tool/`` into a bundle being built: every locked wheel (copied from the wheel store, hashed as it is
written and checked against the lock), ``tool/tool.conf`` and ``tool/install.sh``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from airpack._fs import atomic_write_bytes
from airpack.errors import FetchError
from airpack.hashing import FileDigest, copy_and_hash, sha256_bytes
from airpack.progress import Reporter
from airpack.tool import INSTALL_SCRIPT, TOOL_CONF, WHEELS_DIR, LockedTool, WheelSource
from airpack.tool.wheels import blob, resolve_tool


def install_script() -> bytes:
    """The bytes of ``tool/install.sh`` (package data: the same in every bundle)."""
    return (resources.files("airpack") / "data" / "install.sh").read_bytes()


def write_tool(tool: LockedTool, bundle: Path, *, cache_dir: Path, source: WheelSource,
               reporter: Reporter) -> dict[str, FileDigest]:
    """Copy the locked wheels into ``bundle/tool/wheels``; a wheel missing from the store is fetched again with
    the lock's inputs, and must hash to what was locked."""
    if any(not blob(cache_dir, w.sha256).is_file() for w in tool.wheels):
        resolve_tool(tool.platform, tool.pythons, source, cache_dir, fresh=True)
    out: dict[str, FileDigest] = {}
    advance = reporter.task("copying the tool's wheels", tool.total_size)
    for w in tool.wheels:
        src = blob(cache_dir, w.sha256)
        if not src.is_file():
            raise FetchError(f"tool wheel {w.filename}: the index no longer gives the locked file "
                             f"(sha256 {w.sha256[:12]}…)", hint="run 'airpack lock' again, or build with --no-tool")
        rel = f"{WHEELS_DIR}/{w.filename}"
        target = bundle / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        with part.open("wb") as fh:
            digest = copy_and_hash(src, fh, progress=advance)
            fh.flush()
            os.fsync(fh.fileno())
        if digest.sha256 != w.sha256 or digest.size != w.size:
            part.unlink()
            raise FetchError(f"tool wheel {w.filename}: content differs from the lock",
                             hint="run 'airpack lock' again")
        part.replace(target)
        out[rel] = digest
    reporter.done(advance)
    for rel, data, mode in ((TOOL_CONF, tool.conf(), 0o644), (INSTALL_SCRIPT, install_script(), 0o755)):
        atomic_write_bytes(bundle / rel, data, mode)
        out[rel] = FileDigest(len(data), sha256_bytes(data))
    return out
