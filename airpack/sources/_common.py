"""Helpers shared by the Hub and Hugging Face cache sources: lock checks and the parallel fetch loop."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from airpack._fs import path_problem
from airpack.errors import AirpackError, LockError
from airpack.hashing import FileDigest
from airpack.lock import LockedFile, LockedModel

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Files the Hub stores in git itself are under 10 MB; anything larger listed without LFS is refused.
MAX_SMALL_FILE = 64 * 1024 * 1024
DEFAULT_WORKERS = 4


def check_locked(model: LockedModel, source: str) -> tuple[str, str]:
    """The repo and commit of a locked model of ``source``; a lock that lacks them is a ``LockError``."""
    if model.source != source or not model.repo or not model.commit or not HEX40.match(model.commit):
        raise LockError(f"the lock's model is not a {source} model pinned to a commit",
                        hint="run 'airpack lock' again")
    for f in model.files:
        problem = path_problem(f.path)
        if problem or not HEX64.match(f.sha256):
            raise LockError(f"the lock's model file {f.path!r} is malformed ({problem or 'bad sha256'})")
    return model.repo, model.commit


def gather(files: tuple[LockedFile, ...], one: Callable[[LockedFile], FileDigest],
           workers: int) -> dict[str, FileDigest]:
    """Run ``one`` for every file on a thread pool; report every file that failed, not only the first."""
    results: dict[str, FileDigest] = {}
    failures: list[tuple[str, AirpackError]] = []

    def run(f: LockedFile) -> None:
        try:
            results[f.path] = one(f)
        except AirpackError as exc:
            failures.append((f.path, exc))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run, sorted(files, key=lambda f: -f.size)))  # largest first
    if failures:
        failures.sort()
        first = failures[0][1]
        if len(failures) == 1:
            raise first
        others = ", ".join(path for path, _ in failures[1:])
        raise type(first)(f"{len(failures)} files failed; first: {first.message}; also: {others}",
                          hint=first.hint)
    return {f.path: results[f.path] for f in files}
