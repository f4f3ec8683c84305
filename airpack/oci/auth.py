"""Registry credentials and auth challenges: explicit options, then the user's docker configuration.

Order for a host: ``RegistryOptions.credentials`` → ``$DOCKER_CONFIG/config.json`` (or
``~/.docker/config.json``): ``credHelpers[host]``, ``auths[host].identitytoken`` (an OAuth2 refresh token,
what ``docker login`` stores for OIDC registries such as ACR or Harbor), ``auths[host].auth`` (base64
``user:password``) or ``username``/``password``, then ``credsStore``. A helper answering Username ``<token>``
gives an identity token (docker's convention). Secrets are never logged or put in error messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airpack.errors import SourceError
from airpack.oci.reference import DOCKER_HUB, DOCKER_HUB_API

# docker's credential-helper convention: Username "<token>" means the Secret is an identity token
TOKEN_USERNAME = "<token>"  # noqa: S105 - a marker, not a secret
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", DOCKER_HUB_API)
CA_ENV = "AIRPACK_REGISTRY_CA"


@dataclass(frozen=True)
class Credential:
    """A registry login: ``username``/``password`` for basic auth and token GETs, or an ``identity_token``
    (an OAuth2 refresh token) that is exchanged at the token realm by ``POST`` (``grant_type=refresh_token``).
    Secrets stay out of ``repr``."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @classmethod
    def from_pair(cls, username: str, secret: str) -> Credential:
        """A (username, secret) pair, where username ``<token>`` means the secret is an identity token."""
        return cls(identity_token=secret) if username == TOKEN_USERNAME else cls(username, secret)

    def as_pair(self) -> tuple[str, str]:
        """The pair form: an identity token as ``("<token>", token)``, as credential helpers write it."""
        if self.identity_token:
            return TOKEN_USERNAME, self.identity_token
        return self.username, self.password

    @property
    def basic(self) -> tuple[str, str] | None:
        """Username and password for basic auth; None for an identity token without a password."""
        if not self.username or (self.identity_token and not self.password):
            return None
        return self.username, self.password


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach and authenticate to registries.

    ``plain_http``: extra hosts spoken to over HTTP (loopback hosts always are, as docker does, unless
    listed in ``force_https``). ``credentials``: host → ``Credential`` or ``(user, password)`` (user
    ``<token>``: the password is an identity token), before the docker configuration. ``ca_file``: a PEM
    bundle for HTTPS (default: ``$AIRPACK_REGISTRY_CA``, then docker's ``/etc/docker/certs.d/<host>/ca.crt``,
    then the system store).
    """

    credentials: Mapping[str, Credential | tuple[str, str]] = field(default_factory=dict)
    docker_config: Path | None = None
    ca_file: Path | None = None
    plain_http: frozenset[str] = frozenset()
    force_https: frozenset[str] = frozenset()
    certs_d: Path = Path("/etc/docker/certs.d")
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def ca_for(self, host: str) -> str | bool:
        if self.ca_file:
            return str(self.ca_file)
        env = os.environ.get(CA_ENV)
        if env:
            return env
        docker_ca = self.certs_d / host / "ca.crt"
        return str(docker_ca) if docker_ca.is_file() else True


def _config_path(options: RegistryOptions) -> Path:
    if options.docker_config:
        return options.docker_config
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) / "config.json" if env else Path.home() / ".docker" / "config.json"


def _host_keys(host: str) -> tuple[str, ...]:
    return _HUB_KEYS if host in (DOCKER_HUB, DOCKER_HUB_API) else (host,)


def _normalise_key(key: str) -> str:
    key = re.sub(r"^[a-z]+://", "", key)
    return key.split("/", 1)[0] if not key.startswith("index.docker.io/v1") else "index.docker.io"


def _run_helper(helper: str, server: str) -> Credential | None:
    try:
        out = subprocess.run([f"docker-credential-{helper}", "get"], input=server.encode(),
                             capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        raise SourceError(f"docker credential helper {helper!r} could not be run for {server}") from None
    if out.returncode != 0:
        return None  # "credentials not found in native keychain"
    try:
        doc = json.loads(out.stdout)
        return Credential.from_pair(str(doc["Username"]), str(doc["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"docker credential helper {helper!r} returned malformed output") from None


def registry_credential(host: str, options: RegistryOptions) -> Credential | None:
    """The login for ``host`` (``docker.io`` for Docker Hub), or None for anonymous."""
    for key in _host_keys(host):
        if key in options.credentials:
            given = options.credentials[key]
            return given if isinstance(given, Credential) else Credential.from_pair(*given)
    path = _config_path(options)
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: unreadable docker configuration ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        return None
    keys = _host_keys(host)
    helpers = doc.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _run_helper(str(helpers[key]), key)
    auths = doc.get("auths") or {}
    for raw_key, entry in auths.items():
        if _normalise_key(raw_key) not in {_normalise_key(k) for k in keys} or not isinstance(entry, dict):
            continue
        found = _auths_entry(entry, f"{path}: auths[{raw_key!r}]")
        if found:
            return found
    if doc.get("credsStore"):
        return _run_helper(str(doc["credsStore"]), keys[0])
    return None


def _auths_entry(entry: dict[str, object], where: str) -> Credential | None:
    """One ``auths`` entry. ``identitytoken`` may come with an ``auth`` (ACR writes a dummy user and an empty
    password beside it); like docker, the token is what bearer realms get."""
    user, password = "", ""
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise SourceError(f"{where}.auth is not base64 of user:password") from None
    elif entry.get("username"):
        user, password = str(entry["username"]), str(entry.get("password") or "")
    token = str(entry.get("identitytoken") or "")
    return Credential(user, password, token) if user or token else None


def credentials_for(host: str, options: RegistryOptions) -> tuple[str, str] | None:
    """``registry_credential`` as a (username, secret) pair; an identity token is ``("<token>", token)``."""
    found = registry_credential(host, options)
    return found.as_pair() if found else None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


_PARAM_RE = re.compile(r'([A-Za-z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> Challenge | None:
    """Parse ``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` (or ``Basic``)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "basic"):
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)
