"""Reference parsing (docker normalisation), platform selection, auth challenge and docker config parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from airpack.errors import SourceError
from airpack.oci.auth import RegistryOptions, credentials_for, parse_challenge
from airpack.oci.manifest import Descriptor, select_platform
from airpack.oci.reference import is_loopback, parse_platform, parse_reference


@pytest.mark.parametrize(("ref", "registry", "repo", "tag", "digest"), [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("index.docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("ggml/llama.cpp:server", "docker.io", "ggml/llama.cpp", "server", None),
    ("ghcr.io/ggml-org/llama.cpp:server-cuda", "ghcr.io", "ggml-org/llama.cpp", "server-cuda", None),
    ("localhost/x", "localhost", "x", "latest", None),
    ("127.0.0.1:5000/a/b/c:v1.2_3", "127.0.0.1:5000", "a/b/c", "v1.2_3", None),
    ("reg:5000/a@sha256:" + "a" * 64, "reg:5000", "a", None, "sha256:" + "a" * 64),
    ("reg.example/a:t@sha256:" + "b" * 64, "reg.example", "a", "t", "sha256:" + "b" * 64),
])
def test_parse_reference(ref: str, registry: str, repo: str, tag: str | None, digest: str | None) -> None:
    r = parse_reference(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)


def test_reference_forms() -> None:
    r = parse_reference("busybox:1")
    assert str(r) == "docker.io/library/busybox:1"
    assert r.familiar() == "busybox:1"
    assert r.api_host == "registry-1.docker.io"
    assert parse_reference("127.0.0.1:5000/x/y:2").familiar() == "127.0.0.1:5000/x/y:2"
    assert parse_reference("a@sha256:" + "c" * 64).reference == "sha256:" + "c" * 64


@pytest.mark.parametrize("bad", ["", " busybox", "Busybox", "busybox:", "busybox@sha256:abc", "a//b",
                                 "busybox:-x", "a:b:c", "reg:5000/A"])
def test_parse_reference_rejects(bad: str) -> None:
    with pytest.raises(SourceError):
        parse_reference(bad)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("127.9.9.9") and is_loopback("localhost:80")
    assert is_loopback("[::1]:5000")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("registry.local")


def _entry(plat: dict[str, str], n: int) -> Descriptor:
    return Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + f"{n:x}" * 64, 10, plat)


def test_select_platform() -> None:
    entries = (
        _entry({"os": "unknown", "architecture": "unknown"}, 1),
        _entry({"os": "linux", "architecture": "arm", "variant": "v6"}, 2),
        _entry({"os": "linux", "architecture": "arm", "variant": "v7"}, 3),
        _entry({"os": "linux", "architecture": "amd64"}, 4),
        _entry({"os": "linux", "architecture": "arm64", "variant": "v8"}, 5),
    )
    assert select_platform(entries, parse_platform("linux/amd64"), "x").digest == entries[3].digest
    assert select_platform(entries, parse_platform("linux/x86_64"), "x").digest == entries[3].digest
    assert select_platform(entries, parse_platform("linux/arm/v7"), "x").digest == entries[2].digest
    assert select_platform(entries, parse_platform("linux/arm64"), "x").digest == entries[4].digest
    assert select_platform(entries, parse_platform("linux/arm64/v8"), "x").digest == entries[4].digest
    with pytest.raises(SourceError, match="linux/s390x"):
        select_platform(entries, parse_platform("linux/s390x"), "x")
    with pytest.raises(SourceError):
        parse_platform("amd64")


def test_parse_challenge() -> None:
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"')
    assert ch is not None and ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull"}
    basic = parse_challenge('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("Negotiate") is None


def test_credentials_from_docker_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": base64.b64encode(b"bob:pa:ss").decode()},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:tok").decode()},
        "https://reg.example/v2/": {"username": "u", "password": "p"},
    }}))
    opts = RegistryOptions(docker_config=cfg)
    assert credentials_for("127.0.0.1:5000", opts) == ("bob", "pa:ss")
    assert credentials_for("docker.io", opts) == ("hub", "tok")
    assert credentials_for("reg.example", opts) == ("u", "p")
    assert credentials_for("other:1", opts) is None
    explicit = RegistryOptions(docker_config=cfg, credentials={"127.0.0.1:5000": ("x", "y")})
    assert credentials_for("127.0.0.1:5000", explicit) == ("x", "y")
    assert credentials_for("a:1", RegistryOptions(docker_config=tmp_path / "missing.json")) is None
