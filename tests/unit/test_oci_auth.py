"""Registry credentials from explicit options and the docker configuration: identity tokens (OAuth2 refresh
tokens, what ``docker login`` stores for OIDC registries) beside usernames and passwords."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from airpack.errors import SourceError
from airpack.oci.auth import Credential, RegistryOptions, credentials_for, registry_credential

TOKEN = "idtok-eyJhbGciOi.secret-part"  # noqa: S105 - made up, sent nowhere
ACR_USER = "00000000-0000-0000-0000-000000000000"


def _config(tmp_path: Path, doc: dict[str, object]) -> RegistryOptions:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(doc))
    return RegistryOptions(docker_config=cfg)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_identity_token_alone(tmp_path: Path) -> None:
    opts = _config(tmp_path, {"auths": {"harbor.corp:5000": {"identitytoken": TOKEN}}})
    cred = registry_credential("harbor.corp:5000", opts)
    assert cred == Credential(identity_token=TOKEN)
    assert cred.basic is None  # nothing to answer a basic challenge with
    assert credentials_for("harbor.corp:5000", opts) == ("<token>", TOKEN)  # docker's pair convention


def test_identity_token_beside_acr_dummy_auth(tmp_path: Path) -> None:
    """``az acr login`` writes a placeholder user with an empty password and the identity token."""
    opts = _config(tmp_path, {"auths": {"https://corp.azurecr.io": {
        "auth": _b64(f"{ACR_USER}:"), "identitytoken": TOKEN}}})
    cred = registry_credential("corp.azurecr.io", opts)
    assert cred is not None
    assert (cred.username, cred.password, cred.identity_token) == (ACR_USER, "", TOKEN)
    assert cred.basic is None


def test_identity_token_with_a_real_password_keeps_basic(tmp_path: Path) -> None:
    opts = _config(tmp_path, {"auths": {"reg.example": {"auth": _b64("bob:pw"), "identitytoken": TOKEN}}})
    cred = registry_credential("reg.example", opts)
    assert cred is not None and cred.identity_token == TOKEN and cred.basic == ("bob", "pw")


def test_docker_hub_identity_token(tmp_path: Path) -> None:
    opts = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"identitytoken": TOKEN}}})
    assert registry_credential("docker.io", opts) == Credential(identity_token=TOKEN)


def test_passwords_unchanged(tmp_path: Path) -> None:
    opts = _config(tmp_path, {"auths": {"a:1": {"auth": _b64("u:p:q")}, "b:2": {"username": "v"},
                                        "c:3": {}}})
    assert registry_credential("a:1", opts) == Credential("u", "p:q")
    assert registry_credential("b:2", opts) == Credential("v", "")
    assert registry_credential("c:3", opts) is None
    with pytest.raises(SourceError, match=r"auths\['x:1'\]\.auth is not base64"):
        registry_credential("x:1", _config(tmp_path, {"auths": {"x:1": {"auth": "abc"}}}))


def test_explicit_credentials_take_precedence(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"auths": {"r:1": {"identitytoken": "from-config"}}}).docker_config
    as_pair = RegistryOptions(docker_config=cfg, credentials={"r:1": ("<token>", TOKEN)})
    assert registry_credential("r:1", as_pair) == Credential(identity_token=TOKEN)
    as_object = RegistryOptions(docker_config=cfg, credentials={"r:1": Credential("u", "p")})
    assert credentials_for("r:1", as_object) == ("u", "p")


def test_repr_hides_secrets() -> None:
    shown = repr(Credential("bob", "hunter2", TOKEN))
    assert "bob" in shown and "hunter2" not in shown and TOKEN not in shown


def _helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, username: str) -> None:
    """A ``docker-credential-unit`` on PATH answering ``username`` and a fixed secret (no sockets)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-unit"
    answer = json.dumps({"ServerURL": "x", "Username": username, "Secret": TOKEN})
    script.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat >/dev/null\nprintf '%s' '{answer}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_helper_token_username_is_an_identity_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, monkeypatch, "<token>")
    by_host = _config(tmp_path, {"credHelpers": {"acr.example": "unit"}})
    assert registry_credential("acr.example", by_host) == Credential(identity_token=TOKEN)
    store = _config(tmp_path, {"credsStore": "unit"})
    assert registry_credential("other.example", store) == Credential(identity_token=TOKEN)


def test_helper_plain_username(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, monkeypatch, "alice")
    opts = _config(tmp_path, {"credHelpers": {"reg.example": "unit"}})
    assert registry_credential("reg.example", opts) == Credential("alice", TOKEN)
