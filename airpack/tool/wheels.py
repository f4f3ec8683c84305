"""Fetch the tool's wheels on the connected side, with pip's own resolver (``pip download --platform …
--python-version … --only-binary=:all:``) and the index pip is configured with (or a ``WheelSource``).

Wheels land in a content-addressed store (``<cache>/tool/blobs/<sha256>``); a resolution (airpack's wheel and
the inputs → the pinned set) is kept for ``RESOLUTION_TTL_S`` so that ``lock`` then ``build`` (and a test
session) resolve once. ``AIRPACK_TOOL_CACHE`` moves the store elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airpack import __version__
from airpack._fs import atomic_write_bytes
from airpack.errors import FetchError
from airpack.hashing import hash_file, sha256_bytes
from airpack.tool import LockedTool, LockedWheel, WheelSource, platform_tags

RESOLUTION_TTL_S = 12 * 3600
_PIP_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONFIG_FILE",
            "PIP_CONSTRAINT")
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in")


def store(cache_dir: Path) -> Path:
    env = os.environ.get("AIRPACK_TOOL_CACHE")
    return Path(env) if env else cache_dir / "tool"


def blob(cache_dir: Path, sha256: str) -> Path:
    return store(cache_dir) / "blobs" / sha256


def _pip(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--progress-bar", "off"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        last = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-3:]
        raise FetchError(f"{what} failed: {' / '.join(last) or f'pip exited {proc.returncode}'}",
                         hint="check pip's index ('pip config list'), or give --tool-find-links DIR or "
                              "--tool-index-url URL (--no-tool builds without the tool)")


def _source_tree() -> Path | None:
    """The source checkout airpack runs from (an editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "airpack"' in pyproject.read_text(errors="replace"):
        return root
    return None


def _tree_files(root: Path) -> list[Path]:
    files = [root / n for n in _SOURCE_FILES if (root / n).is_file()]
    for dirpath, dirnames, filenames in os.walk(root / "airpack"):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".pyo"))]
    return files


def self_wheel(cache_dir: Path, source: WheelSource) -> Path:
    """airpack's own wheel: built from the source checkout (a copy, so the tree gets no ``build/``), cached by a
    hash of its files; from an installed airpack, ``airpack==<version>`` from the index."""
    root = _source_tree()
    if root is None:
        out = store(cache_dir) / "self" / __version__
        if not any(out.glob("airpack-*.whl")):
            _pip(["download", "--no-deps", "--only-binary=:all:", "--dest", str(out), *source.pip_args(),
                  f"airpack=={__version__}"], f"pip download airpack=={__version__}")
        return next(out.glob("airpack-*.whl"))
    files = _tree_files(root)
    key = sha256_bytes(b"".join(str(f.relative_to(root)).encode() + b"\0" + sha256_bytes(f.read_bytes()).encode()
                                for f in files))[:24]
    out = store(cache_dir) / "self" / key
    found = list(out.glob("airpack-*.whl"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(prefix="airpack-wheel-") as tmp:
        src = Path(tmp) / "src"
        for f in files:
            (src / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, src / f.relative_to(root))
        isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
        _pip(["wheel", "--no-deps", *isolation, "--wheel-dir", str(Path(tmp) / "dist"), *source.pip_args(),
              str(src)], "building airpack's wheel", env)  # SOURCE_DATE_EPOCH: reproducible zip times
        built = next((Path(tmp) / "dist").glob("airpack-*.whl"))
        out.mkdir(parents=True, exist_ok=True)
        part = out / f".{built.name}.part"
        shutil.copyfile(built, part)
        part.replace(out / built.name)
    return out / built.name


def _resolution_key(self_sha: str, platform: str, pythons: tuple[str, ...], source: WheelSource) -> str:
    pip_version = importlib.metadata.version("pip")
    doc = {"self": self_sha, "platform": platform, "pythons": list(pythons), "source": source.to_dict(),
           "env": {k: os.environ.get(k) for k in _PIP_ENV}, "pip": pip_version}
    return sha256_bytes(json.dumps(doc, sort_keys=True).encode())[:32]


def _cached(path: Path, cache_dir: Path) -> LockedTool | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if time.time() - path.stat().st_mtime < RESOLUTION_TTL_S:
            tool = LockedTool.from_dict(json.loads(path.read_bytes()))
            if all(blob(cache_dir, w.sha256).is_file() for w in tool.wheels):
                return tool
    return None


def resolve_tool(platform: str, pythons: tuple[str, ...], source: WheelSource, cache_dir: Path, *,
                 fresh: bool = False) -> LockedTool:
    """Pin airpack's wheel and everything it needs on ``platform`` for each of ``pythons``."""
    me = self_wheel(cache_dir, source)
    self_sha = hash_file(me).sha256
    record = store(cache_dir) / "resolved" / f"{_resolution_key(self_sha, platform, pythons, source)}.json"
    if not fresh and (hit := _cached(record, cache_dir)) is not None:
        return hit
    tags = [f"--platform={t}" for t in platform_tags(platform)]
    wheels: dict[str, LockedWheel] = {}
    with tempfile.TemporaryDirectory(prefix="airpack-tool-") as tmp:
        for py in pythons:
            dest = Path(tmp) / py
            _pip(["download", "--dest", str(dest), "--only-binary=:all:", "--implementation", "cp",
                  "--python-version", py, *tags, *source.pip_args(), str(me), "pip"],
                 f"pip download of airpack's far-side wheels for Python {py} on {platform}")
            for f in sorted(dest.iterdir()):
                if not f.name.endswith(".whl"):
                    raise FetchError(f"pip download gave {f.name}, not a wheel", hint="report this as a bug")
                d = hash_file(f)
                target = blob(cache_dir, d.sha256)
                if not target.is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, target.with_name(f".{d.sha256}.part"))
                    target.with_name(f".{d.sha256}.part").replace(target)
                prior = wheels.setdefault(f.name, LockedWheel(f.name, d.size, d.sha256))
                if prior.sha256 != d.sha256:
                    raise FetchError(f"{f.name}: two different files under one name from the index")
    tool = LockedTool(__version__, platform, pythons, tuple(wheels[n] for n in sorted(wheels)))
    atomic_write_bytes(record, json.dumps(tool.to_dict(), indent=1, sort_keys=True).encode())
    return tool
