"""Read one small locked file of the model's source at lock time (the publisher's signature), from wherever the
source is: a local folder, a Hugging Face cache, or the Hub at the locked commit. The bytes must hash to what
the lock recorded, so what is checked is what the bundle will carry."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from airpack.errors import FetchError, SourceError
from airpack.lock import LockedFile, LockedModel
from airpack.spec import Spec


def read_locked_file(spec: Spec, model: LockedModel, f: LockedFile, *, cap: int) -> bytes:
    """``f``'s bytes from the source of ``model``; FetchError when they are not the locked ones."""
    if f.size > cap:
        raise SourceError(f"{f.path}: {f.size} bytes, more than the {cap} a signature may have")
    if model.source == "local":
        assert spec.model_dir is not None  # noqa: S101 - a local lock has a folder
        data = _read(spec.model_dir / f.path, cap)
    elif model.source == "hf-cache":
        from airpack.sources.hf_cache import _Snapshot  # noqa: PLC0415

        assert spec.model.cache is not None  # noqa: S101 - an hf-cache lock has a cache
        real, _ = _Snapshot(spec.model, spec.base_dir / spec.model.cache).resolve(f.path)
        data = _read(real, cap)
    else:
        data = _from_hub(str(model.repo), str(model.commit), f.path)
    if hashlib.sha256(data).hexdigest() != f.sha256:
        raise FetchError(f"{f.path}: changed while it was being locked (its sha256 differs)",
                         hint="run 'airpack lock' again")
    return data


def _read(path: Path, cap: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(cap + 1)
    except OSError as exc:
        raise FetchError(f"{path}: cannot read: {exc.strerror}") from None


def _from_hub(repo: str, commit: str, path: str) -> bytes:
    from huggingface_hub import hf_hub_url  # noqa: PLC0415
    from huggingface_hub.file_download import http_get  # noqa: PLC0415
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # noqa: PLC0415
    from huggingface_hub.utils.tqdm import silent_tqdm  # noqa: PLC0415

    from airpack.sources.hf import hub_errors  # noqa: PLC0415

    buf = io.BytesIO()
    with hub_errors(repo, commit, path):
        http_get(hf_hub_url(repo, path, revision=commit), buf, headers=build_hf_headers(), tqdm_class=silent_tqdm)
    return buf.getvalue()
