"""Hugging Face Hub source: lock a repo at one commit without downloading its weights, then fetch it verified.

Lock: the revision (branch, tag or commit) is resolved to a commit sha once, and everything after uses that
sha, so a branch that moves later cannot change what is built. The Hub publishes a sha256 for each LFS file,
which the lock takes as is; small (non-LFS) files carry only a git blob id, so they are downloaded at lock time
(they are config, tokenizer and chat template: they define the model's behaviour), checked against that id,
and recorded with both.

Fetch: every file is downloaded with huggingface_hub's ``http_get`` (its auth headers, redirects and in-run
retries) from ``/resolve/<commit>/<path>`` into airpack's cache, where a cut download resumes on the next run
(see ``_store``). Xet is not used: see ``docs/hub.md``.

The token comes from the argument, else huggingface_hub's usual places (``HF_TOKEN``, the token file). It is
only ever put in request headers: never in a lock, a bundle, an error message or a log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# huggingface_hub.utils (below) exports lazily, invisibly to mypy; its httpx is httpx (1.x) or httpx2 (2.x).
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.file_download import http_get
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, httpx  # type: ignore[attr-defined]
from huggingface_hub.utils.tqdm import silent_tqdm

from airpack.errors import FetchError, LockError, SourceError
from airpack.hashing import FileDigest, Progress
from airpack.lock import LockedFile, LockedModel, check_bundle_paths
from airpack.progress import Reporter
from airpack.selection import select_files
from airpack.sources._common import DEFAULT_WORKERS, HEX40, HEX64, MAX_SMALL_FILE, check_locked, gather
from airpack.sources._store import BlobStore, git_blob_id
from airpack.sources.hf_cache import fetch_hf_cache, lock_from_hf_cache
from airpack.spec import ModelSpec


@contextlib.contextmanager
def hub_errors(repo: str, revision: str, path: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub and transport exceptions into one-line airpack errors (no URL, no token)."""
    where = f"{repo}@{revision[:12]}" + (f": {path}" if path else "")
    try:
        yield
    except hf_errors.GatedRepoError:
        raise SourceError(f"model.repo: {repo} is gated and the token in use has no access to it",
                          hint="accept the model's terms on the Hub, then set HF_TOKEN or run 'hf auth login'"
                          ) from None
    except hf_errors.RepositoryNotFoundError:
        raise SourceError(f"model.repo: {repo} does not exist on the Hub, or is private",
                          hint="check the repo id; for a private repo set HF_TOKEN") from None
    except hf_errors.RevisionNotFoundError:
        raise SourceError(f"model.revision: {revision!r} is not a branch, tag or commit of {repo}",
                          hint="check model.revision; if it is a locked commit, it was removed: lock again") from None
    except hf_errors.RemoteEntryNotFoundError:
        raise SourceError(f"{where}: the file is no longer in the repo",
                          hint="run 'airpack lock' again") from None
    except hf_errors.OfflineModeIsEnabled:
        raise FetchError(f"{where}: HF_HUB_OFFLINE is set, the Hub cannot be reached",
                         hint="unset HF_HUB_OFFLINE, or take the model from a Hugging Face cache (model.cache)"
                         ) from None
    except hf_errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no response"
        raise FetchError(f"{where}: the Hub answered HTTP {status}",
                         hint="try again later; a rerun resumes where this one stopped") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{where}: network error talking to the Hub ({type(exc).__name__})",
                         hint="check the connection and HF_ENDPOINT; a rerun resumes where this one stopped"
                         ) from None
    except OSError as exc:
        raise FetchError(f"{where}: {exc.strerror or exc} ({exc.filename or 'download'})") from None


def _list_files(api: HfApi, model: ModelSpec, repo: str) -> tuple[str, dict[str, RepoFile]]:
    """The commit ``model.revision`` points to now, and every file in the repo at that commit."""
    with hub_errors(repo, model.revision):
        info = api.model_info(repo, revision=model.revision)
        commit = info.sha
        if not isinstance(commit, str) or not HEX40.match(commit):
            raise SourceError(f"model.revision: the Hub gave no commit sha for {repo}@{model.revision}")
        entries = api.list_repo_tree(repo, revision=commit, recursive=True)
        files = {e.path: e for e in entries if isinstance(e, RepoFile)}
    return commit, files


def _lock_small_file(repo: str, commit: str, entry: RepoFile, endpoint: str | None,
                     headers: dict[str, str]) -> LockedFile:
    """Download a non-LFS file, check it against the git blob id the Hub lists, record sha256 and blob id."""
    if entry.size > MAX_SMALL_FILE:
        raise SourceError(f"{repo}@{commit[:12]}: {entry.path}: {entry.size} bytes but not stored in LFS",
                          hint="exclude it with model.exclude")
    buf = io.BytesIO()
    url = hf_hub_url(repo, entry.path, revision=commit, endpoint=endpoint)
    with hub_errors(repo, commit, entry.path):
        http_get(url, buf, headers=headers, tqdm_class=silent_tqdm)
    data = buf.getvalue()
    blob_id = git_blob_id(data)
    if len(data) != entry.size or blob_id != entry.blob_id:
        raise FetchError(f"{repo}@{commit[:12]}: {entry.path}: the bytes served do not match the git blob id "
                         f"the Hub lists ({len(data)} bytes, blob {blob_id[:12]}…; listed {entry.size} bytes, "
                         f"blob {str(entry.blob_id)[:12]}…)",
                         hint="try again later; if it persists, the endpoint is serving altered content")
    return LockedFile(entry.path, len(data), hashlib.sha256(data).hexdigest(), blob_id)


def resolve_hub(model: ModelSpec, *, endpoint: str | None = None, token: str | None = None) -> LockedModel:
    """Lock a Hub repo: pin ``model.revision`` to a commit and record every selected file's size and sha256.

    Weights are not downloaded: their sha256 comes from the Hub's LFS metadata. Small files are downloaded
    and checked against their git blob id. Raises ``SourceError`` for a missing, private or gated repo, a
    revision that does not exist, or a file that vanished; ``FetchError`` for network failures and bytes that
    do not match what the Hub lists.
    """
    repo = model.repo
    if not repo:
        raise SourceError("model.repo: not set")
    api = HfApi(endpoint=endpoint, token=token)
    commit, entries = _list_files(api, model, repo)
    sel = select_files(entries, include=model.files, exclude=model.exclude,
                       allow_pickle=model.allow_pickle, allow_code=model.allow_code)
    if not sel.selected:
        raise SourceError(f"model.files: no files selected in {repo}@{commit[:12]}",
                          hint="check model.files and model.exclude against the repo's file list")
    check_bundle_paths(list(sel.selected), f"model.repo {repo}")
    headers = build_hf_headers(token=token)
    files: list[LockedFile] = []
    for path in sel.selected:
        entry = entries[path]
        if entry.lfs is None:
            files.append(_lock_small_file(repo, commit, entry, endpoint, headers))
            continue
        sha256 = str(entry.lfs.sha256)
        if not HEX64.match(sha256) or int(entry.lfs.size) < 0:
            raise SourceError(f"{repo}@{commit[:12]}: {path}: the Hub listed malformed LFS metadata")
        files.append(LockedFile(path, int(entry.lfs.size), sha256))
    if all(entries[f.path].lfs is not None for f in files):
        # Nothing was downloaded: ask for one file's headers so a gated repo fails now, not at build time.
        url = hf_hub_url(repo, files[0].path, revision=commit, endpoint=endpoint)
        with hub_errors(repo, commit, files[0].path):
            get_hf_file_metadata(url, token=token, endpoint=endpoint)
    return LockedModel(source="hub", files=tuple(files), excluded=sel.excluded, repo=repo,
                       revision=model.revision, commit=commit)


def fetch_hub(
    model: LockedModel,
    dest_dir: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    cache_dir: Path,
    progress: Progress | None = None,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, FileDigest]:
    """Download every locked file to ``dest_dir/<path>``, verified against the lock; return their digests.

    Downloads run in parallel across files and are kept under ``cache_dir/hub`` (airpack's cache, see
    ``default_cache_dir``): a cut download resumes on the next run, and a file fetched once is not fetched
    again. ``progress`` receives byte counts from several threads. A file whose bytes do not match the lock
    raises ``FetchError`` naming it, and nothing is left at its destination.
    """
    repo, commit = check_locked(model, "hub")
    store = BlobStore(cache_dir / "hub")
    headers = build_hf_headers(token=token)

    def one(f: LockedFile) -> FileDigest:
        url = hf_hub_url(repo, f.path, revision=commit, endpoint=endpoint)

        def download(fh: BinaryIO, have: int) -> None:
            http_get(url, fh, resume_size=have, headers=headers, tqdm_class=silent_tqdm)

        with hub_errors(repo, commit, f.path):
            return store.fetch(f, dest_dir / f.path, download, progress)

    return gather(model.files, one, workers)


def fetch_model(
    model: LockedModel,
    dest_dir: Path,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
    cache: Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> dict[str, FileDigest]:
    """Fetch a locked ``hub`` or ``hf-cache`` model into ``dest_dir``; the build stage's single entry point.

    ``cache`` is the Hugging Face cache folder (``model.cache``) an ``hf-cache`` lock was made from.
    """
    advance = reporter.task(f"model {model.repo}", model.total_size) if reporter else None
    if model.source == "hf-cache":
        if cache is None:
            raise LockError("the lock takes the model from a Hugging Face cache, but model.cache is not set",
                            hint="set model.cache in the spec, or lock again")
        digests = fetch_hf_cache(model, dest_dir, cache=cache, progress=advance)
    else:
        digests = fetch_hub(model, dest_dir, endpoint=endpoint, token=token, cache_dir=cache_dir,
                            progress=advance)
    if reporter and advance:
        reporter.done(advance)
    return digests


__all__ = ["fetch_hf_cache", "fetch_hub", "fetch_model", "lock_from_hf_cache", "resolve_hub"]
