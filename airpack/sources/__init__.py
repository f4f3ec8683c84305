"""Model sources other than a local folder: a Hugging Face Hub repo, or a Hugging Face cache folder.

Each source has a lock function (resolve what the spec names to exact files, sizes and sha256) and a fetch
function (put those exact bytes in a folder, verified, and return their digests so the bundle writer does not
read them again).
"""

from __future__ import annotations

import os
from pathlib import Path

from airpack.sources.hf import fetch_hf_cache, fetch_hub, fetch_model, lock_from_hf_cache, resolve_hub

__all__ = ["default_cache_dir", "fetch_hf_cache", "fetch_hub", "fetch_model", "lock_from_hf_cache", "resolve_hub"]


def default_cache_dir() -> Path:
    """airpack's download cache: ``$AIRPACK_CACHE``, else ``$XDG_CACHE_HOME/airpack``, else ``~/.cache/airpack``."""
    explicit = os.environ.get("AIRPACK_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "airpack"
