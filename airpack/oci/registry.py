"""A small, daemonless client for the OCI distribution API (``/v2/``), on ``requests``.

Why not the PyPI package ``oras`` (0.2.x, also on requests): its ``get_manifest`` returns parsed JSON, so
the exact bytes (what a digest covers) are lost; ``download_blob`` neither checks the digest nor resumes
with ``Range``; its retry decorator swallows broad exceptions and it logs to the console. Everything
airpack needs (bearer/basic auth, resumable verified downloads, chunked uploads) is ~300 lines here.
``requests`` is already required by the docker SDK, so no dependency is added.

Bearer tokens come from the challenge's realm: ``GET`` with basic auth for a username/password (or none), or,
for an identity token, docker's OAuth2 ``POST`` (``grant_type=refresh_token``, ``client_id=airpack``); a
refresh token the server rotates is kept for the rest of the process, never written to the user's config.

Transport failures become ``FetchError``; HTTP statuses are returned to callers, which know whether a 404
means "unknown image" (lock) or "the registry lost a blob" (build).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from typing import IO, Any, Self

import requests
from requests.adapters import HTTPAdapter

from airpack import __version__
from airpack.errors import FetchError, SourceError
from airpack.oci.auth import Challenge, Credential, RegistryOptions, parse_challenge, registry_credential
from airpack.oci.manifest import ACCEPT, MAX_MANIFEST_BYTES, media_type_of, sha256_digest
from airpack.oci.neterr import short_cause
from airpack.oci.reference import DOCKER_HUB, is_loopback

Body = bytes | IO[bytes] | io.RawIOBase | None
OAUTH_CLIENT_ID = "airpack"
_REFUSED_HINT = "check 'docker login' or the registry credentials given to airpack"
_IDENTITY_REFUSED_HINT = "the identity token may have expired or been revoked: run 'docker login' again"
_OAUTH_REFUSALS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})

# Refresh tokens the token servers rotated in this process: (realm, service, identity token) → newest one.
# Later clients for the same login use it (a rotating server may already refuse the one in the config).
_rotated: dict[tuple[str, str, str], str] = {}
_rotated_lock = threading.Lock()  # also serialises refresh-token exchanges, as docker does


class RegistryClient:
    """One registry host. Thread-safe for concurrent blob transfers (tokens are cached per scope)."""

    def __init__(self, registry: str, options: RegistryOptions | None = None, *, pool: int = 8) -> None:
        self.options = options or RegistryOptions()
        self.registry = registry
        self.host = "registry-1.docker.io" if registry == DOCKER_HUB else registry
        plain = (is_loopback(self.host) or self.host in self.options.plain_http) and (
            self.host not in self.options.force_https)
        self.base = f"{'http' if plain else 'https'}://{self.host}"
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"airpack/{__version__}"
        self.session.verify = self.options.ca_for(self.host)
        self.session.trust_env = False  # no proxies for registry traffic; CA comes from RegistryOptions
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._challenge: Challenge | None = None
        self._creds_loaded = False
        self._creds: Credential | None = None

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth ---------------------------------------------------------------------------------------
    def _credentials(self) -> Credential | None:
        with self._lock:
            if not self._creds_loaded:
                self._creds = registry_credential(self.registry, self.options)
                self._creds_loaded = True
            return self._creds

    def _auth_header(self, scope: str) -> dict[str, str]:
        ch = self._challenge
        if ch is None:
            return {}
        if ch.scheme == "basic":
            basic = self._basic_credentials()
            return {"Authorization": requests.auth._basic_auth_str(*basic)} if basic else {}
        with self._lock:
            token = self._tokens.get(scope)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _basic_credentials(self) -> tuple[str, str] | None:
        """The basic-auth pair; an identity token alone cannot answer a basic challenge."""
        creds = self._credentials()
        if creds is None:
            return None
        if creds.basic is None:
            raise SourceError(f"{self.host}: the registry asks for a username and password (basic auth), "
                              "but the docker configuration holds only an identity token for it",
                              hint=f"run 'docker login {self.registry}' with a username and password")
        return creds.basic

    def _fetch_token(self, ch: Challenge, scope: str) -> None:
        realm = ch.params.get("realm")
        if not realm:
            raise FetchError(f"{self.host}: bearer challenge without a realm")
        service = ch.params.get("service") or ""
        creds = self._credentials()
        if creds is not None and creds.identity_token:
            token = self._oauth_token(realm, service, scope, creds.identity_token)
        else:
            params = {k: v for k, v in (("service", service), ("scope", scope)) if v}
            auth = creds.basic if creds else None
            try:
                resp = self.session.get(realm, params=params, auth=auth, timeout=self._timeout())
            except requests.RequestException as exc:
                raise self._token_failure(realm, exc) from None
            self._check_token_status(resp, scope, _REFUSED_HINT)
            token = self._token_field(resp, "token", "access_token")
        with self._lock:
            self._tokens[scope] = token

    def _oauth_token(self, realm: str, service: str, scope: str, identity_token: str) -> str:
        """Exchange the identity token (an OAuth2 refresh token) for an access token, as docker does: the
        form goes in the body, never the URL, and a ``POST`` that fails is not retried as a ``GET``."""
        key = (realm, service, identity_token)
        with _rotated_lock:
            refresh = _rotated.get(key, identity_token)
            form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": OAUTH_CLIENT_ID,
                    **{k: v for k, v in (("service", service), ("scope", scope)) if v}}
            try:
                # No redirects: a 307/308 would resend the refresh token to wherever it points.
                resp = self.session.post(realm, data=form, timeout=self._timeout(), allow_redirects=False)
            except requests.RequestException as exc:
                raise self._token_failure(realm, exc) from None
            # RFC 6749 answers a bad refresh token with 400 invalid_grant; registries mostly with 401.
            refused = resp.status_code == 400 and _json_field(resp, "error") in _OAUTH_REFUSALS
            self._check_token_status(resp, scope, _IDENTITY_REFUSED_HINT, refused=refused)
            token = self._token_field(resp, "access_token", "token")
            new_refresh = _json_field(resp, "refresh_token")
            if new_refresh and new_refresh != refresh:
                _rotated[key] = new_refresh
        return token

    def _token_failure(self, realm: str, exc: Exception) -> FetchError:
        return FetchError(f"{self.host}: token request to {realm} failed ({short_cause(exc)})")

    def _check_token_status(self, resp: requests.Response, scope: str, hint: str, *, refused: bool = False
                            ) -> None:
        if refused or resp.status_code in (401, 403):
            raise SourceError(f"{self.host}: credentials refused for {scope or 'access'}", hint=hint)
        if resp.status_code != 200:
            raise FetchError(f"{self.host}: token endpoint answered HTTP {resp.status_code}")

    def _token_field(self, resp: requests.Response, *names: str) -> str:
        for name in names:
            value = _json_field(resp, name)
            if value:
                return value
        raise FetchError(f"{self.host}: token endpoint returned no token")

    def _timeout(self) -> tuple[float, float]:
        return (self.options.connect_timeout, self.options.read_timeout)

    # -- requests -----------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, *, repo: str | None = None, actions: str = "pull",
        headers: Mapping[str, str] | None = None, body: Body = None, stream: bool = False,
        params: Mapping[str, str] | None = None, url: str | None = None,
    ) -> requests.Response:
        """Send one request, answering at most one auth challenge (rewinding a seekable body)."""
        scope = f"repository:{repo}:{actions}" if repo else ""
        target = url or f"{self.base}{path}"
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        for attempt in range(2):
            hdrs = dict(headers or {})
            hdrs.update(self._auth_header(scope))
            try:
                resp = self.session.request(method, target, headers=hdrs, data=body, stream=stream,
                                            params=params, timeout=self._timeout(), allow_redirects=True)
            except requests.exceptions.SSLError as exc:
                raise FetchError(f"{self.host}: TLS verification failed ({exc.__class__.__name__})",
                                 hint=f"give the registry's CA with ${'AIRPACK_REGISTRY_CA'}") from None
            except requests.RequestException as exc:  # one line: the host and the cause, not urllib3's text
                raise FetchError(f"{self.host}: cannot reach the registry ({short_cause(exc)})") from None
            if resp.status_code != 401 or attempt:
                return resp
            challenge = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.close()
            if challenge is None:
                return resp
            self._challenge = challenge
            if challenge.scheme == "bearer":
                self._fetch_token(challenge, challenge.params.get("scope") or scope)
                with self._lock:
                    if challenge.params.get("scope") and challenge.params["scope"] != scope:
                        self._tokens[scope] = self._tokens[challenge.params["scope"]]
            elif self._basic_credentials() is None:
                return resp
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
        return resp  # pragma: no cover - loop always returns

    def get_manifest(self, repo: str, reference: str, where: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest). The digest is computed from the bytes, never taken on trust."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{reference}", repo=repo,
                            headers={"Accept": ACCEPT}, stream=True)
        with resp:
            if resp.status_code == 404:
                raise SourceError(f"{where}: not found in {self.registry}",
                                  hint="check the repository name and tag")
            if resp.status_code in (401, 403):
                raise SourceError(f"{where}: access denied by {self.registry} (HTTP {resp.status_code})",
                                  hint="log in with 'docker login' or give credentials")
            if resp.status_code != 200:
                raise FetchError(f"{where}: {self.registry} answered HTTP {resp.status_code}")
            data = resp.raw.read(MAX_MANIFEST_BYTES + 1, decode_content=True)
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise FetchError(f"{where}: manifest bytes hash to {digest}, not {reference}",
                             hint="the registry or a proxy returned different bytes")
        return data, media_type_of(data, resp.headers.get("Content-Type"), where), digest

    def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest the registry reports for a tag, or None when the tag is gone."""
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", repo=repo,
                            headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise FetchError(f"{self.registry}/{repo}:{reference}: HTTP {resp.status_code} on HEAD")
        return resp.headers.get("Docker-Content-Digest")

    def open_blob(self, repo: str, digest: str, offset: int = 0) -> requests.Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, headers=headers, stream=True)

    def get_blob_bytes(self, repo: str, digest: str, limit: int, where: str) -> bytes:
        """A small blob (a config) read into memory and checked against its digest."""
        with self.open_blob(repo, digest) as resp:
            if resp.status_code != 200:
                raise FetchError(f"{where}: blob {digest} answered HTTP {resp.status_code}")
            data: bytes = resp.raw.read(limit + 1, decode_content=False)
        if len(data) > limit or sha256_digest(data) != digest:
            raise FetchError(f"{where}: blob {digest} does not match its digest")
        return data

    def blob_exists(self, repo: str, digest: str, actions: str = "pull") -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, actions=actions)
        return resp.status_code == 200

    def absolute(self, location: str) -> str:
        return location if "://" in location else f"{self.base}{location}"


def _json_field(resp: requests.Response, name: str) -> str:
    """A string field of a JSON object body, or "" (token endpoints answer small JSON objects)."""
    try:
        doc = resp.json()
    except ValueError:
        return ""
    value = doc.get(name) if isinstance(doc, dict) else None
    return value if isinstance(value, str) else ""


def check_status(resp: requests.Response, ok: tuple[int, ...], what: str) -> None:
    if resp.status_code not in ok:
        detail = ""
        try:
            errors: Any = resp.json().get("errors")
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors or [])
        except (ValueError, AttributeError):
            pass
        raise FetchError(f"{what}: HTTP {resp.status_code}{' (' + detail + ')' if detail else ''}")
