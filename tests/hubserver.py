"""A small Hugging Face Hub on 127.0.0.1 for integration tests: real HTTP, real bytes, faults on demand.

It serves what huggingface_hub 2.x really calls: model info (``/api/models/{repo}[/revision/{rev}]``, with
``?blobs=true``), its refs (``/api/models/{repo}/refs``), the paginated tree
(``/api/models/{repo}/tree/{rev}[/{path}]``), and ``/{repo}/resolve/{rev}/{path}`` (HEAD and GET,
``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``, ``X-Linked-Size``, ``Range`` → 206).
LFS files answer with a 302 to a second listener (another origin, like the Hub's CDN), so the client strips
its ``Authorization`` header there as it would on the real Hub. Errors carry the Hub's ``X-Error-Code``.

Faults: ``lie_sha256`` (the listing advertises a sha256 the bytes do not have), ``lie_blob_id``, ``cut``
(close the connection after N body bytes, then answer 503 for a while), ``ignore_range`` (200 and the whole
file), ``oversized_range`` (206 and the whole file) and ``vanish``.
Every request is logged in ``requests``; ``connections`` counts TCP connections.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

BLOCK = 1024 * 1024


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class HubFile:
    """One file at one commit: bytes in memory or on disk, and the ids the Hub publishes for it."""

    path: str
    size: int
    sha256: str
    lfs: bool
    data: bytes | None = None
    disk: Path | None = None

    @property
    def pointer(self) -> bytes:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {self.size}\n").encode()

    @property
    def blob_id(self) -> str:
        """git's id for what is committed: the content, or the LFS pointer."""
        if self.lfs:
            return git_blob_id(self.pointer)
        assert self.data is not None
        return git_blob_id(self.data)

    def read(self, start: int, end: int) -> Iterator[bytes]:
        if self.data is not None:
            for pos in range(start, end, BLOCK):
                yield self.data[pos:min(end, pos + BLOCK)]
            return
        assert self.disk is not None
        with self.disk.open("rb") as fh:
            fh.seek(start)
            pos = start
            while pos < end:
                block = fh.read(min(BLOCK, end - pos))
                if not block:
                    return
                pos += len(block)
                yield block


def small(path: str, data: bytes | str) -> HubFile:
    raw = data.encode() if isinstance(data, str) else data
    return HubFile(path, len(raw), hashlib.sha256(raw).hexdigest(), lfs=False, data=raw)


def lfs(path: str, data: bytes) -> HubFile:
    return HubFile(path, len(data), hashlib.sha256(data).hexdigest(), lfs=True, data=data)


def lfs_on_disk(path: str, disk: Path, sha256: str) -> HubFile:
    return HubFile(path, disk.stat().st_size, sha256, lfs=True, disk=disk)


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, dict[str, HubFile]]
    refs: dict[str, str]
    gated: bool = False
    tags: set[str] = field(default_factory=set)  # refs listed as tags by /refs; the others are branches


@dataclass
class Logged:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0
    body_bytes: int = 0


@dataclass
class _Cut:
    after: int
    then_fail: int


@dataclass
class HubState:
    repos: dict[str, Repo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    page_size: int = 1000
    lied_sha256: dict[tuple[str, str], str] = field(default_factory=dict)
    lied_blob_id: dict[tuple[str, str], str] = field(default_factory=dict)
    vanished: set[tuple[str, str]] = field(default_factory=set)
    cuts: dict[str, _Cut] = field(default_factory=dict)  # by real sha256
    ignore_range: bool = False
    oversized_range: bool = False  # answer a Range request with 206 and the whole file (a broken mirror)
    requests: list[Logged] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class HubServer:
    """Two listeners on 127.0.0.1 (the Hub and its "CDN") sharing one state. Use as a context manager."""

    def __init__(self) -> None:
        self.state = HubState()
        self._hub = _Server(("127.0.0.1", 0), _Handler, self.state, "hub")
        self._cdn = _Server(("127.0.0.1", 0), _Handler, self.state, "cdn")
        self._hub.cdn_url = self._cdn.base_url
        self._threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in (self._hub, self._cdn)]

    @property
    def url(self) -> str:
        return self._hub.base_url

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()

    # --------------------------------------------------------------------------------- content and faults
    def add_repo(self, repo_id: str, commits: dict[str, list[HubFile]], refs: dict[str, str],
                 gated: bool = False) -> Repo:
        repo = Repo(repo_id, {c: {f.path: f for f in files} for c, files in commits.items()}, dict(refs), gated)
        self.state.repos[repo_id] = repo
        return repo

    def move_ref(self, repo_id: str, ref: str, commit: str) -> None:
        self.state.repos[repo_id].refs[ref] = commit

    def lie_sha256(self, repo_id: str, path: str) -> None:
        self.state.lied_sha256[(repo_id, path)] = hashlib.sha256(b"not the bytes" + path.encode()).hexdigest()

    def lie_blob_id(self, repo_id: str, path: str) -> None:
        self.state.lied_blob_id[(repo_id, path)] = git_blob_id(b"not the bytes" + path.encode())

    def vanish(self, repo_id: str, path: str) -> None:
        self.state.vanished.add((repo_id, path))

    def cut(self, sha256: str, *, after: int, then_fail: int = 0) -> None:
        """Close the next download of these bytes after ``after`` body bytes, then answer 503 ``then_fail`` times."""
        self.state.cuts[sha256] = _Cut(after, then_fail)

    def logged(self, server: str | None = None, method: str | None = None) -> list[Logged]:
        with self.state.lock:
            return [r for r in self.state.requests
                    if (server is None or r.server == server) and (method is None or r.method == method)]

    def clear_log(self) -> None:
        with self.state.lock:
            self.state.requests.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], handler: Any, state: HubState, name: str) -> None:
        super().__init__(addr, handler)
        self.state = state
        self.name = name
        self.cdn_url = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-body (as a bounded reader does on purpose) is not a server error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    @property
    def st(self) -> HubState:
        return self.server.state

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.entry = Logged(self.server.name, self.command, self.path, self.headers.get("Range"),
                            self.headers.get("Authorization"))
        with self.st.lock:
            self.st.requests.append(self.entry)
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.server.name == "cdn":
            return self._cdn(parts)
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo, rest = self._repo("/".join(parts[2:4])), parts[4:]
            if repo is None:
                return
            if not rest:
                return self._info(repo, "main", query)
            if rest[0] == "revision" and len(rest) == 2:
                return self._info(repo, rest[1], query)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query, url.path)
            if rest == ["refs"]:
                return self._refs(repo)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo("/".join(parts[:2]))
            if repo is not None:
                return self._resolve(repo, parts[3], "/".join(parts[4:]))
            return None
        return self._error(404, None, "Not found")

    # ------------------------------------------------------------------------------------------ helpers
    def _error(self, status: int, code: str | None, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.entry.status = status
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.entry.status = 200
        if self.command != "HEAD":
            self.wfile.write(body)

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.st.repos.get(repo_id)
        if repo is None:
            status = 401 if self.entry.authorization is None else 404
            self._error(status, "RepoNotFound", "Repository not found")
        return repo

    def _commit(self, repo: Repo, rev: str) -> str | None:
        commit = repo.refs.get(rev) or (rev if rev in repo.commits else None)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def _advertised(self, repo: Repo, f: HubFile) -> tuple[str, str]:
        key = (repo.repo_id, f.path)
        return self.st.lied_sha256.get(key, f.sha256), self.st.lied_blob_id.get(key, f.blob_id)

    def _lfs_json(self, repo: Repo, f: HubFile, sha_key: str) -> dict[str, Any] | None:
        if not f.lfs:
            return None
        return {sha_key: self._advertised(repo, f)[0], "size": f.size, "pointerSize": len(f.pointer)}

    # ---------------------------------------------------------------------------------------- endpoints
    def _info(self, repo: Repo, rev: str, query: dict[str, str]) -> None:
        commit = self._commit(repo, rev)
        if commit is None:
            return
        siblings: list[dict[str, Any]] = []
        for f in sorted(repo.commits[commit].values(), key=lambda f: f.path):
            sib: dict[str, Any] = {"rfilename": f.path}
            if query.get("blobs", "").lower() == "true":
                sib.update(size=f.size, blobId=self._advertised(repo, f)[1])
                if f.lfs:
                    sib["lfs"] = self._lfs_json(repo, f, "sha256")
            siblings.append(sib)
        self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": commit, "private": False,
                    "gated": "manual" if repo.gated else False, "siblings": siblings})

    def _refs(self, repo: Repo) -> None:
        def ref(name: str, kind: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": repo.refs[name]}

        names = sorted(repo.refs)
        self._json({"branches": [ref(n, "heads") for n in names if n not in repo.tags],
                    "tags": [ref(n, "tags") for n in names if n in repo.tags], "converts": [], "pullRequests": []})

    def _tree(self, repo: Repo, rev: str, sub: str, query: dict[str, str], path: str) -> None:
        commit = self._commit(repo, rev)
        if commit is None:
            return
        recursive = query.get("recursive", "").lower() == "true"
        prefix = f"{sub}/" if sub else ""
        entries: dict[str, dict[str, Any]] = {}
        for f in repo.commits[commit].values():
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix):].split("/")
            for depth in range(1, len(rest)):  # the folders on the way
                folder = prefix + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries[folder] = {"type": "directory", "oid": git_blob_id(folder.encode()), "path": folder}
            if recursive or len(rest) == 1:
                entry: dict[str, Any] = {"type": "file", "oid": self._advertised(repo, f)[1], "size": f.size,
                                         "path": f.path}
                if f.lfs:
                    entry["lfs"] = self._lfs_json(repo, f, "oid")
                entries[f.path] = entry
        if sub and not entries:
            return self._error(404, "EntryNotFound", f"{sub} does not exist on {rev}")
        ordered = [entries[k] for k in sorted(entries)]
        start = int(query.get("cursor", "0"))
        page = ordered[start:start + self.st.page_size]
        extra = {}
        if start + self.st.page_size < len(ordered):
            nxt = (f"{self.server.base_url}{quote(path)}?recursive={str(recursive).lower()}"
                   f"&expand=false&cursor={start + self.st.page_size}")
            extra["Link"] = f'<{nxt}>; rel="next"'
        self._json(page, extra)

    def _resolve(self, repo: Repo, rev: str, path: str) -> None:
        auth = self.entry.authorization
        if repo.gated and (auth is None or auth.removeprefix("Bearer ") not in self.st.tokens):
            msg = f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated."
            return self._error(401 if auth is None else 403, "GatedRepo", msg)
        commit = self._commit(repo, rev)
        if commit is None:
            return None
        f = repo.commits[commit].get(path)
        if f is None or (repo.repo_id, path) in self.st.vanished:
            return self._error(404, "EntryNotFound", "Entry not found")
        sha256, blob_id = self._advertised(repo, f)
        if f.lfs:
            self.send_response(302)
            self.send_header("Location", f"{self.server.cdn_url}/cdn/{f.sha256}?repo={quote(repo.repo_id)}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{blob_id}"')
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.entry.status = 302
            return None
        return self._body(f, {"X-Repo-Commit": commit, "ETag": f'"{blob_id}"'})

    def _cdn(self, parts: list[str]) -> None:
        if len(parts) != 2 or parts[0] != "cdn":
            return self._error(404, None, "Not found")
        for repo in self.st.repos.values():
            for files in repo.commits.values():
                for f in files.values():
                    if f.sha256 == parts[1]:
                        return self._body(f, {"ETag": f'"{f.sha256}"'})
        return self._error(404, None, "Not found")

    def _take_cut(self, f: HubFile) -> tuple[bool, int | None]:
        """(answer 503?, cut after N bytes?) for this GET, consuming the fault."""
        with self.st.lock:
            pending = self.st.cuts.get(f.sha256)
            if pending is None:
                return False, None
            if pending.after >= 0:  # first the cut, then ``then_fail`` answers of 503
                after, pending.after = pending.after, -1
                if pending.then_fail <= 0:
                    del self.st.cuts[f.sha256]
                return False, after
            pending.then_fail -= 1
            if pending.then_fail <= 0:
                del self.st.cuts[f.sha256]
            return True, None

    def _body(self, f: HubFile, headers: dict[str, str]) -> None:
        fail, cut = self._take_cut(f) if self.command == "GET" else (False, None)
        if fail:
            return self._error(503, None, "Service temporarily unavailable")
        start, end, status = 0, f.size, 200
        rng = self.headers.get("Range")
        if rng and not self.st.ignore_range and rng.startswith("bytes="):
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first) if first else 0
            end = int(last) + 1 if last else f.size
            if start >= f.size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.entry.status = 416
                return None
            end, status = min(end, f.size), 206
            if self.st.oversized_range:
                start, end = 0, f.size
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{f.size}")
        self.end_headers()
        self.entry.status = status
        if self.command == "HEAD":
            return None
        for block in f.read(start, end):
            if cut is not None and self.entry.body_bytes + len(block) > cut:
                block = block[: cut - self.entry.body_bytes]
                self.wfile.write(block)
                self.entry.body_bytes += len(block)
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            self.wfile.write(block)
            self.entry.body_bytes += len(block)
        return None


# ------------------------------------------------------------------------------------------ standard content

TOKEN = "hf_airpackTestToken0123456789abcdefSECRET"  # noqa: S105 - a test token, accepted only by this server
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def commit_id(label: str) -> str:
    return hashlib.sha1(label.encode(), usedforsecurity=False).hexdigest()


def safetensors_bytes(seed: int, n: int = 64 * 1024) -> bytes:
    """A valid safetensors file with one F32 tensor of ``n`` deterministic values."""
    data = b"".join(hashlib.sha256(b"%d:%d" % (seed, i)).digest() for i in range(n * 4 // 32))
    header = json.dumps({"weight": {"dtype": "F32", "shape": [n], "data_offsets": [0, len(data)]},
                         "__metadata__": {"format": "pt"}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


def tiny_files(version: int) -> list[HubFile]:
    """A small transformers-style repo, plus the pickle and code files the safety rules must leave out."""
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "vocab_size": 256, "torch_dtype": "float32", "revision": version}
    return [
        lfs("model.safetensors", safetensors_bytes(version)),
        small("config.json", json.dumps(config, indent=2) + "\n"),
        small("generation_config.json", '{"bos_token_id": 1, "eos_token_id": 2}\n'),
        small("tokenizer.json", json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}})),
        small("tokenizer_config.json", '{"model_max_length": 2048, "chat_template": "{{ messages }}"}\n'),
        small("chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}\n"),
        small("special_tokens_map.json", '{"bos_token": "<s>", "eos_token": "</s>"}\n'),
        small("README.md", f"# tiny v{version}\n"),
        small(".gitattributes", "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"),
        lfs("pytorch_model.bin", b"PK\x03\x04 pickle " * 512),
        small("modeling_tiny.py", "import os\nos.system('echo pwned')\n"),
        small("extra/notes.txt", "nested folder\n"),
    ]


TINY_C1, TINY_C2 = commit_id("tiny-1"), commit_id("tiny-2")
SMOL_C1 = commit_id("smol-1")


def standard_hub(gguf: Path, gguf_sha256: str) -> HubServer:
    """``acme/tiny`` (main and tag v1.0 at TINY_C1; TINY_C2 exists), ``acme/gated`` (gated copy), and
    ``acme/smol`` (the real SmolLM2 GGUF, 98 MB, at SMOL_C1)."""
    hub = HubServer()
    hub.state.tokens.add(TOKEN)
    hub.add_repo("acme/tiny", {TINY_C1: tiny_files(1), TINY_C2: tiny_files(2)}, {"main": TINY_C1, "v1.0": TINY_C1})
    hub.add_repo("acme/gated", {TINY_C1: tiny_files(1)}, {"main": TINY_C1}, gated=True)
    smol = [lfs_on_disk(GGUF_NAME, gguf, gguf_sha256), small("README.md", "# SmolLM2 GGUF\n"),
            small("config.json", '{"model_type": "llama"}\n')]
    hub.add_repo("acme/smol", {SMOL_C1: smol}, {"main": SMOL_C1})
    return hub
