# ruff: noqa: S501  (verify=False: test registries with throwaway certificates)
"""Real local parts for tests: a private docker engine, distribution registries, a fault-injecting proxy,
a bearer-token server, and helpers that build images (with docker, or in pure Python) and push them.

Fixtures (import them into a test module or a conftest with ``from tests.dockerenv import *``):

- ``docker_engine`` (session): a ``DockerEngine``; ``.client`` is a ``docker.DockerClient``, ``.host`` the
  ``unix://`` URL (also usable as ``DOCKER_HOST`` for CLI calls). Reuses ``$DOCKER_HOST`` when it answers,
  else starts ``dockerd --iptables=false --ip6tables=false --bridge=none`` with its own data/exec roots and
  socket under a temp dir and stops it at the end. If it cannot start: ``pytest.fail`` under ``CI=true``,
  ``pytest.skip`` otherwise (``required``: the same rule for every real part).
- ``upstream_registry`` (session) / ``internal_registry`` (function): a running ``Registry``
  (``.host`` = ``127.0.0.1:PORT``; ``.stop()``/``.start()``; ``.blob_file(digest)`` in its storage).
- ``built_images`` (session): builds the busybox test images with ``scripts/build-test-images.sh`` and
  pushes them to ``upstream_registry``; a dict name → ``BuiltImage``.
- ``llama_server_image`` (session): builds ``airpack-test/llama-server:<ver>`` from ``$LLAMA_SERVER_BIN``
  (or the output of ``scripts/build-llama-server.sh`` when its cache is ready); skips when no binary.

Plain functions: ``start_registry(tmp, ...)``, ``start_engine(tmp)``, ``build_test_images(engine, which)``,
``make_image(...)`` / ``push_image(...)`` / ``push_index(...)`` (no docker needed), ``FaultProxy``,
``TokenServer``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout}s")


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- registry --------------------------------------------------------------------------------------
@dataclass
class Registry:
    """Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 with filesystem storage in a temp dir."""

    root: Path
    port: int
    config: Path
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    def start(self) -> Registry:
        if self.proc and self.proc.poll() is None:
            return self
        log = (self.root / "registry.log").open("ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=log, stderr=log)
        log.close()

        def up() -> bool:
            assert self.proc and self.proc.poll() is None, (self.root / "registry.log").read_text()[-2000:]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the readiness probe does not check the test certificate
                return requests.get(f"{self.url}/v2/", timeout=2, verify=False).status_code in (200, 401)

        _wait(up, 20, f"registry on {self.host}")
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def blob_file(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def start_registry(tmp: Path, name: str = "registry", *, auth: dict[str, Any] | None = None,
                   tls: tuple[Path, Path] | None = None) -> Registry:
    root = tmp / name
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http_cfg: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "airpack-test-secret"}
    if tls:
        http_cfg["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")}, "delete": {"enabled": True}},
        "http": http_cfg,
    }
    if auth:
        cfg["auth"] = auth
    config = root / "config.yml"
    config.write_text(json.dumps(cfg))  # JSON is YAML
    return Registry(root, port, config, "https" if tls else "http").start()


# --- docker engine ---------------------------------------------------------------------------------
@dataclass
class DockerEngine:
    host: str
    client: Any
    root: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        _stop(self.proc, 30)
        if self.root:
            # dockerd leaves mounts behind (exec/netns/default nsfs, overlay2 if killed): unmount them,
            # deepest first, before removing the tree.
            prefix = str(self.root) + "/"
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                      if line.split()[1].startswith(prefix)]
            for mnt in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
            shutil.rmtree(self.root, ignore_errors=True)


def start_engine(tmp: Path | None = None) -> DockerEngine:
    """Reuse a reachable ``$DOCKER_HOST``, else start a private dockerd (host networking only)."""
    import docker

    if os.environ.get("DOCKER_HOST"):
        with contextlib.suppress(Exception):
            client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"], timeout=300)
            client.ping()
            return DockerEngine(os.environ["DOCKER_HOST"], client)
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed")
    # Short path: unix socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="apd-", dir=str(tmp) if tmp else None))
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("ab")
    proc = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{sock}"],
        stdout=log, stderr=log)
    log.close()
    engine = DockerEngine(f"unix://{sock}", None, root, proc)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((root / "dockerd.log").read_text()[-2000:])
            return sock.exists() and docker.DockerClient(base_url=engine.host).ping()

        deadline = time.monotonic() + 60
        while True:
            try:
                if up():
                    break
            except RuntimeError:
                raise
            except Exception:  # noqa: S110, BLE001 - still starting
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dockerd did not answer in 60s")
            time.sleep(0.2)
        engine.client = docker.DockerClient(base_url=engine.host, timeout=600)
    except BaseException:
        engine.stop()
        raise
    return engine


def _unavailable(why: str) -> None:
    required(f"docker engine unavailable: {why}")


def required(why: str) -> None:
    """A real part a test needs is missing: a failure under ``CI=true`` (CI installs every part), a skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} (required with CI=true)")
    pytest.skip(why)


# --- images made in Python (no engine needed) ------------------------------------------------------
@dataclass
class MadeImage:
    manifest: bytes
    media_type: str
    config: bytes
    layers: list[bytes]
    layer_types: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_layer(files: dict[str, bytes], *, compress: bool = True) -> tuple[bytes, str]:
    """A layer tar (gzip unless ``compress=False``) and its diff ID. Deterministic."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if not compress:
        return raw, sha256(raw)
    return gzip.compress(raw, mtime=0), sha256(raw)


def make_image(layers: list[dict[str, bytes]], *, arch: str = "amd64", oci: bool = True,
               label: str = "") -> MadeImage:
    blobs, diff_ids = [], []
    for files in layers:
        blob, diff_id = make_layer(files)
        blobs.append(blob)
        diff_ids.append(diff_id)
    config = json.dumps({
        "architecture": arch, "os": "linux", "config": {"Labels": {"t": label}, "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": [{"created_by": "airpack test"}],
    }, sort_keys=True).encode()
    mt = OCI_MANIFEST if oci else DOCKER_MANIFEST
    ltype = "application/vnd.oci.image.layer.v1.tar+gzip" if oci else \
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ctype = "application/vnd.oci.image.config.v1+json" if oci else "application/vnd.docker.container.image.v1+json"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": ctype, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": ltype, "digest": sha256(b), "size": len(b)} for b in blobs],
    }, indent=1).encode()
    return MadeImage(manifest, mt, config, blobs, [ltype] * len(blobs))


def push_blob(base: str, repo: str, data: bytes) -> None:
    digest = sha256(data)
    if requests.head(f"{base}/v2/{repo}/blobs/{digest}", timeout=30, verify=False).status_code == 200:
        return
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30, verify=False)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    loc = loc if "://" in loc else base + loc
    r = requests.put(loc, params={"digest": digest}, data=data, timeout=60, verify=False,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def push_manifest(base: str, repo: str, reference: str, data: bytes, media_type: str) -> str:
    r = requests.put(f"{base}/v2/{repo}/manifests/{reference}", data=data, timeout=30, verify=False,
                     headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def push_image(base: str, repo: str, tag: str | None, image: MadeImage) -> str:
    """Push an image made by ``make_image`` (anonymous registry) under ``tag`` (or by digest)."""
    for blob in (image.config, *image.layers):
        push_blob(base, repo, blob)
    return push_manifest(base, repo, tag or image.digest, image.manifest, image.media_type)


def push_index(base: str, repo: str, tag: str, images: dict[str, MadeImage]) -> str:
    """Push each image by digest and an OCI index over them (keys: "linux/amd64", "linux/arm/v7")."""
    entries = []
    for plat, image in images.items():
        push_image(base, repo, None, image)
        os_, arch, *variant = plat.split("/")
        p = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        entries.append({"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
                        "platform": p})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    return push_manifest(base, repo, tag, index, OCI_INDEX)


# --- fault-injecting HTTP proxy --------------------------------------------------------------------
class FaultProxy:
    """An HTTP proxy in front of a registry that logs requests and can cut responses or go down.

    ``cut_after(n, match)``: the next response whose path contains ``match`` is cut after ``n`` body bytes
    and the proxy then refuses everything (``down``) until ``up()``. ``fail_next(method, match)``: the next
    matching request is read, then its connection is dropped without a response (the proxy stays up).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.down = False
        self._cut: tuple[int, str] | None = None
        self._fail: tuple[str, str] | None = None
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                if proxy.down:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                headers = {k: v for k, v in self.headers.items()}
                proxy.log.append((self.command, self.path, headers))
                body = self._body()
                if proxy._fail and self.command == proxy._fail[0] and proxy._fail[1] in self.path:
                    proxy._fail = None
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "transfer-encoding")}
                if body is not None:
                    fwd["Content-Length"] = str(len(body))
                resp = requests.request(self.command, proxy.upstream + self.path, headers=fwd, data=body,
                                        stream=True, allow_redirects=False, timeout=60)
                cut = proxy._cut if proxy._cut and proxy._cut[1] in self.path else None
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() in ("connection", "transfer-encoding", "keep-alive"):
                        continue
                    if k.lower() == "location":
                        v = v.replace(proxy.upstream, proxy.url)
                    self.send_header(k, v)
                self.end_headers()
                sent = 0
                if self.command != "HEAD":
                    for chunk in resp.raw.stream(65536, decode_content=False):
                        if cut and sent + len(chunk) >= cut[0]:
                            self.wfile.write(chunk[: cut[0] - sent])
                            self.wfile.flush()
                            proxy._cut, proxy.down = None, True
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n or self.command in ("PUT", "PATCH", "POST") else None

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def cut_after(self, nbytes: int, match: str) -> None:
        self._cut = (nbytes, match)

    def fail_next(self, method: str, match: str) -> None:
        self._fail = (method, match)

    def up(self) -> None:
        self.down = False

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- bearer token server ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenCall:
    """One request to the ``TokenServer``: method, query string and (for ``POST``) form fields."""

    method: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    content_type: str


class TokenServer:
    """A token endpoint for distribution's ``auth: token``: anonymous pulls everywhere except under
    ``private/``, which needs ``user``/``password`` (``GET`` with basic auth) or, like an OAuth2/OIDC registry
    (ACR, Harbor), the identity token ``refresh_token`` (``POST`` with ``grant_type=refresh_token``; answers
    ``access_token``). ``rotate``: each exchange returns a new refresh token and retires the one used.
    ``calls`` records every request. Signs ES256 JWTs with a self-signed cert (``x5c``)."""

    def __init__(self, root: Path, user: str = "alice", password: str = "s3cret",  # noqa: S107
                 refresh_token: str = "idtok-alice-0", *, rotate: bool = False) -> None:  # noqa: S107
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airpack-test-token")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.cert_file = root / "token-cert.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.user, self.password = user, password
        self.requests: list[tuple[str | None, str]] = []  # (user or None, scope)
        self.calls: list[TokenCall] = []
        self.refresh_tokens = {refresh_token}  # the valid ones
        self.rotate = rotate
        ts = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                ctype = self.headers.get("Content-Type", "")
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = urllib.parse.parse_qs(raw)
                ts.calls.append(TokenCall("POST", q, form, ctype))
                field = {k: v[0] for k, v in form.items()}
                if not ctype.startswith("application/x-www-form-urlencoded") or not field.get("client_id"):
                    self._reply(400, {"error": "invalid_request"})
                    return
                if field.get("grant_type") != "refresh_token":
                    self._reply(400, {"error": "unsupported_grant_type"})
                    return
                with ts.lock:
                    valid = field.get("refresh_token") in ts.refresh_tokens
                    new_refresh = None
                    if valid and ts.rotate:
                        ts.refresh_tokens.discard(field["refresh_token"])
                        new_refresh = f"idtok-rotated-{os.urandom(6).hex()}"
                        ts.refresh_tokens.add(new_refresh)
                if not valid:
                    self._reply(401, {"error": "invalid_grant"})
                    return
                scopes = field.get("scope", "").split()
                ts.requests.append((ts.user, " ".join(scopes)))
                doc = {"access_token": ts.token(ts.grant(scopes, ts.user), field.get("service", ""), ts.user),
                       "expires_in": 300, **({"refresh_token": new_refresh} if new_refresh else {})}
                self._reply(200, doc)

            def do_GET(self) -> None:
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                ts.calls.append(TokenCall("GET", q, {}, ""))
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if (u, p) != (ts.user, ts.password):
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u
                scopes = q.get("scope", [])
                ts.requests.append((user, " ".join(scopes)))
                self._reply(200, {"token": ts.token(ts.grant(scopes, user), q.get("service", [""])[0], user)})

        self.lock = threading.Lock()
        self._hashes, self._ec = hashes, ec
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": "airpack-test", "issuer": "airpack-test-issuer",
                          "rootcertbundle": str(self.cert_file)}}

    @staticmethod
    def grant(scopes: list[str], user: str | None) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if kind == "repository" and (user or not repo.startswith("private/")):
                access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        return access

    def token(self, access: list[dict[str, Any]], service: str, user: str | None) -> str:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        from cryptography.hazmat.primitives.serialization import Encoding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert.public_bytes(Encoding.DER))
                                                        .decode()]}
        claims = {"iss": "airpack-test-issuer", "sub": user or "", "aud": service, "exp": now + 600,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), self._ec.ECDSA(self._hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed_tls(root: Path) -> tuple[Path, Path]:
    """A CA-less self-signed server certificate for 127.0.0.1 (acts as its own CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = root / "tls-cert.pem", root / "tls-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


# --- images built with docker ----------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltImage:
    local: str          # tag in the engine, e.g. airpack-test/busybox:1
    pushed: str | None  # 127.0.0.1:PORT/airpack-test/busybox:1 when pushed upstream
    image_id: str


def build_test_images(engine: DockerEngine, which: str = "small", *, llama_bin: Path | None = None
                      ) -> dict[str, str]:
    """Run ``scripts/build-test-images.sh``; returns name → local tag (e.g. ``busybox`` →
    ``airpack-test/busybox:1``). ``which``: ``small``, ``llama`` or ``all``."""
    env = engine.env()
    if llama_bin:
        env["LLAMA_SERVER_BIN"] = str(llama_bin)
    out = subprocess.run(["bash", str(ROOT / "scripts/build-test-images.sh"), which], env=env,
                         capture_output=True, text=True, check=False, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"build-test-images.sh failed:\n{out.stderr[-3000:]}")
    images = {}
    for line in out.stdout.splitlines():
        name, _, tag = line.partition(" ")
        if tag:
            images[name] = tag
    return images


def push_to(engine: DockerEngine, local: str, registry: Registry) -> str:
    """Tag ``local`` as ``127.0.0.1:PORT/<repo:tag>`` and ``docker push`` it (plain HTTP on loopback)."""
    target = f"{registry.host}/{local}"
    repo, _, tag = target.rpartition(":")
    engine.client.api.tag(local, repo, tag)
    for msg in engine.client.api.push(repo, tag, stream=True, decode=True):
        if msg.get("error"):
            raise RuntimeError(f"docker push {target}: {msg['error']}")
    return target


def llama_server_binary() -> Path | None:
    """``$LLAMA_SERVER_BIN``, else the cached output of ``scripts/build-llama-server.sh`` (never builds)."""
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    cache = Path(os.environ.get("AIRPACK_BUILD_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "airpack-build")
    found = sorted(cache.glob("llama-server-*/llama-server"))
    return found[-1] if found else None


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    try:
        engine = start_engine()
    except Exception as exc:  # noqa: BLE001 - permissions, no dockerd, ...
        _unavailable(f"{type(exc).__name__}: {exc}")
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def upstream_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("reg"), "upstream")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def internal_registry(tmp_path: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path, "internal")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def built_images(docker_engine: DockerEngine, upstream_registry: Registry) -> dict[str, BuiltImage]:
    out = {}
    for name, local in build_test_images(docker_engine, "small").items():
        pushed = push_to(docker_engine, local, upstream_registry)
        out[name] = BuiltImage(local, pushed, docker_engine.client.api.inspect_image(local)["Id"])
    return out


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """The llama-server binary; checked before any engine starts, so a missing one fails (CI) or skips at once."""
    binary = llama_server_binary()
    if binary is None:
        required("no llama-server binary: run scripts/build-llama-server.sh or set LLAMA_SERVER_BIN")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def llama_server_image(llama_server_bin: Path, docker_engine: DockerEngine) -> BuiltImage:
    local = build_test_images(docker_engine, "llama", llama_bin=llama_server_bin)["llama-server"]
    return BuiltImage(local, None, docker_engine.client.api.inspect_image(local)["Id"])


__all__ = [
    "BuiltImage",
    "DockerEngine",
    "FaultProxy",
    "MadeImage",
    "Registry",
    "TokenCall",
    "TokenServer",
    "build_test_images",
    "built_images",
    "docker_engine",
    "free_port",
    "internal_registry",
    "llama_server_bin",
    "llama_server_binary",
    "llama_server_image",
    "make_image",
    "make_layer",
    "push_blob",
    "push_image",
    "push_index",
    "push_manifest",
    "push_to",
    "required",
    "self_signed_tls",
    "sha256",
    "start_engine",
    "start_registry",
    "upstream_registry",
]


@contextlib.contextmanager
def registry_pair(tmp_factory: Any, tag: str) -> Iterator[tuple[Registry, Registry]]:
    """An "upstream" registry (where images come from) and an "internal" one (the site's), stopped after."""
    upstream = start_registry(tmp_factory.mktemp(f"{tag}-up"), "upstream")
    internal = start_registry(tmp_factory.mktemp(f"{tag}-in"), "internal")
    try:
        yield upstream, internal
    finally:
        upstream.stop()
        internal.stop()


def direct_env() -> dict[str, str]:
    """This environment without proxy settings: the CLI talks to the loopback registries directly."""
    return {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
