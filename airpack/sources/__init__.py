"""Model sources other than a local folder: a Hugging Face Hub repo, or a Hugging Face cache folder.

Each source has a lock function (resolve what the spec names to exact files, sizes and sha256) and a fetch
function (put those exact bytes in a folder, verified, and return their digests so the bundle writer does not
read them again).
"""

from __future__ import annotations

from airpack.cache import cache_dir as default_cache_dir
from airpack.sources.hf import fetch_hf_cache, fetch_hub, fetch_model, lock_from_hf_cache, resolve_hub

__all__ = ["default_cache_dir", "fetch_hf_cache", "fetch_hub", "fetch_model", "lock_from_hf_cache", "resolve_hub"]

