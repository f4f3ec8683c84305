"""The daemonless registry client against real distribution registries on 127.0.0.1 (no docker engine).

Images are made in Python and pushed with the raw registry API; skopeo is the independent check.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airpack.errors import FetchError, SourceError
from airpack.oci import RegistryOptions, push_layout, resolve_image
from airpack.oci.fetch import fetch_image
from airpack.oci.layout import ref_name
from tests.dockerenv import (
    FaultProxy,
    MadeImage,
    Registry,
    TokenServer,
    make_image,
    push_image,
    push_index,
    self_signed_tls,
    sha256,
    start_registry,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = start_registry(tmp_path_factory.mktemp("oci"), "upstream")
    yield r
    r.stop()


def skopeo(*args: str) -> str:
    out = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


SHARED = {"bin/tool": b"shared layer " * 4000}


def test_resolve_tag_to_digest(reg: Registry) -> None:
    oci = make_image([SHARED, {"app": b"one"}], label="oci")
    docker = make_image([SHARED, {"app": b"two"}], oci=False, label="docker")
    push_image(reg.url, "t/resolve", "oci", oci)
    push_image(reg.url, "t/resolve", "docker", docker)
    for tag, image in (("oci", oci), ("docker", docker)):
        locked = resolve_image(f"{reg.host}/t/resolve:{tag}", "linux/amd64")
        assert locked.digest == image.digest
        assert locked.config_digest == image.config_digest
        assert locked.media_type == image.media_type
        assert (locked.tag, locked.source, locked.repository) == (tag, "registry", f"{reg.host}/t/resolve")
        assert locked.size == len(image.manifest) + len(image.config) + sum(len(x) for x in image.layers)
        assert locked.extra["layerMediaTypes"] == sorted(set(image.layer_types))
    by_digest = resolve_image(f"{reg.host}/t/resolve@{oci.digest}", "linux/amd64")
    assert by_digest.digest == oci.digest and by_digest.tag is None


def test_unknown_image_or_tag(reg: Registry) -> None:
    push_image(reg.url, "t/known", "1", make_image([{"a": b"a"}]))
    for ref in (f"{reg.host}/t/unknown:1", f"{reg.host}/t/known:2", f"{reg.host}/t/known@sha256:{'0' * 64}"):
        with pytest.raises(SourceError, match="not found"):
            resolve_image(ref, "linux/amd64")


def test_index_picks_platform(reg: Registry) -> None:
    amd = make_image([{"f": b"amd64"}], arch="amd64")
    arm = make_image([{"f": b"armv7"}], arch="arm")
    index_digest = push_index(reg.url, "t/multi", "1", {"linux/amd64": amd, "linux/arm/v7": arm})
    a = resolve_image(f"{reg.host}/t/multi:1", "linux/amd64")
    b = resolve_image(f"{reg.host}/t/multi:1", "linux/arm/v7")
    assert (a.digest, a.config_digest) == (amd.digest, amd.config_digest)
    assert (b.digest, b.config_digest) == (arm.digest, arm.config_digest)
    assert a.extra["indexDigest"] == b.extra["indexDigest"] == index_digest
    with pytest.raises(SourceError, match="no image for platform linux/s390x"):
        resolve_image(f"{reg.host}/t/multi:1", "linux/s390x")
    push_image(reg.url, "t/armonly", "1", make_image([{"f": b"x"}], arch="arm64"))
    with pytest.raises(SourceError, match="linux/arm64"):
        resolve_image(f"{reg.host}/t/armonly:1", "linux/amd64")


def test_fetch_into_layout_checked_by_skopeo(reg: Registry, tmp_path: Path) -> None:
    one = make_image([SHARED, {"app": b"1" * 3000}], label="f1")
    two = make_image([SHARED, {"app": b"2" * 3000}], oci=False, label="f2")
    push_image(reg.url, "t/fetch", "one", one)
    push_image(reg.url, "t/fetch", "two", two)
    layout, cache = tmp_path / "layout", tmp_path / "cache"
    locks = [resolve_image(f"{reg.host}/t/fetch:{t}", "linux/amd64") for t in ("one", "two")]
    results = [fetch_image(lk, layout, cache_dir=cache) for lk in locks]
    assert results[0].downloaded > 0
    blobs = sorted(p.name for p in (layout / "blobs/sha256").iterdir())
    expected = {sha256(b)[7:] for img in (one, two) for b in (img.manifest, img.config, *img.layers)}
    assert set(blobs) == expected and len(blobs) == len(expected)  # the shared layer is stored once
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    # skopeo's oci: transport only lists OCI media types in index.json, so the docker schema2 image is
    # checked byte for byte here (and through skopeo after a push, in the push test).
    info = json.loads(skopeo("inspect", f"oci:{layout}:{ref_name(locks[0])}"))
    assert info["Digest"] == one.digest
    out = tmp_path / "dir-one"
    skopeo("copy", "--quiet", f"oci:{layout}:{ref_name(locks[0])}", f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == one.manifest  # byte for byte, not re-serialised
    for layer in one.layers:
        assert (out / sha256(layer)[7:]).read_bytes() == layer
    index = json.loads((layout / "index.json").read_text())["manifests"]
    assert [(e["digest"], e["mediaType"], e["annotations"]["org.opencontainers.image.ref.name"]) for e in index] \
        == [(lk.digest, lk.media_type, ref_name(lk)) for lk in locks]
    for image in (one, two):
        for blob in (image.manifest, image.config, *image.layers):
            assert (layout / "blobs/sha256" / sha256(blob)[7:]).read_bytes() == blob
    again = fetch_image(locks[0], layout, cache_dir=cache)  # everything already there: nothing downloaded
    assert again.downloaded == 0


def test_moved_tag_is_an_error(reg: Registry, tmp_path: Path) -> None:
    push_image(reg.url, "t/moving", "1", make_image([{"v": b"first"}]))
    locked = resolve_image(f"{reg.host}/t/moving:1", "linux/amd64")
    push_image(reg.url, "t/moving", "1", make_image([{"v": b"second"}]))
    with pytest.raises(SourceError, match="moved"):
        fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "layout/blobs/sha256").iterdir())
    assert json.loads((tmp_path / "layout/index.json").read_text())["manifests"] == []


def test_corrupt_blob_in_registry(reg: Registry, tmp_path: Path) -> None:
    image = make_image([{"big": os.urandom(200_000)}])
    push_image(reg.url, "t/corrupt", "1", image)
    locked = resolve_image(f"{reg.host}/t/corrupt:1", "linux/amd64")
    data_file = reg.blob_file(sha256(image.layers[0]))
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    with pytest.raises(FetchError, match="not the locked digest"):
        fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "layout/blobs/sha256").iterdir()]
    cached = {p.name for p in (tmp_path / "cache/blobs/sha256").iterdir()}
    assert cached == {image.config_digest[7:]}  # the good config may stay cached; the bad layer may not
    assert not [p for p in (tmp_path / "cache/partial").iterdir() if p.stat().st_size]


def test_registry_dies_mid_download_and_rerun_resumes(reg: Registry, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    image = make_image([{"payload": payload}])
    push_image(reg.url, "t/resume", "1", image)
    layer = sha256(image.layers[0])
    proxy = FaultProxy(reg.url)
    try:
        locked = resolve_image(f"{proxy.host}/t/resume:1", "linux/amd64")
        proxy.cut_after(1024 * 1024, f"/blobs/{layer}")  # then the "registry" stays down
        with pytest.raises(FetchError, match="interrupted"):
            fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache", retries=1, workers=1)
        partial = tmp_path / "cache/partial" / layer[7:]
        have = partial.stat().st_size
        assert 0 < have < len(image.layers[0])
        assert not (tmp_path / "layout/blobs/sha256" / layer[7:]).exists()
        proxy.up()
        proxy.log.clear()
        result = fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache")
        ranges = [h.get("Range") for m, p, h in proxy.log if m == "GET" and layer in p]
        assert ranges == [f"bytes={have}-"]  # resumed, not restarted
        assert result.downloaded == len(image.layers[0]) - have + len(image.config)
        assert (tmp_path / "layout/blobs/sha256" / layer[7:]).read_bytes() == image.layers[0]
    finally:
        proxy.close()


def _docker_config(tmp_path: Path, host: str, user: str, password: str) -> Path:
    cfg = tmp_path / "docker-config.json"
    cfg.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode())
                                                .decode()}}}))
    return cfg


def test_bearer_token_auth(tmp_path: Path) -> None:
    public, private = make_image([{"p": b"public"}]), make_image([{"p": b"private"}])
    plain = start_registry(tmp_path, "auth")
    push_image(plain.url, "pub/img", "1", public)
    push_image(plain.url, "private/img", "1", private)
    plain.stop()
    tokens = TokenServer(tmp_path)
    guarded = Registry(plain.root, plain.port, plain.config)
    cfg = json.loads(plain.config.read_text())
    cfg["auth"] = tokens.registry_auth()
    plain.config.write_text(json.dumps(cfg))
    guarded.start()
    try:
        nobody = RegistryOptions(docker_config=tmp_path / "none.json")
        locked = resolve_image(f"{guarded.host}/pub/img:1", "linux/amd64", options=nobody)
        assert locked.digest == public.digest
        assert tokens.requests and tokens.requests[0][0] is None  # anonymous token
        fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache", options=nobody)
        with pytest.raises(SourceError, match="access denied"):
            resolve_image(f"{guarded.host}/private/img:1", "linux/amd64", options=nobody)
        creds = RegistryOptions(docker_config=_docker_config(tmp_path, guarded.host, "alice", "s3cret"))
        assert resolve_image(f"{guarded.host}/private/img:1", "linux/amd64", options=creds).digest == \
            private.digest
        assert ("alice", "repository:private/img:pull") in tokens.requests
        wrong = RegistryOptions(docker_config=_docker_config(tmp_path, guarded.host, "alice", "nope"))
        with pytest.raises(SourceError, match="credentials refused"):
            resolve_image(f"{guarded.host}/private/img:1", "linux/amd64", options=wrong)
    finally:
        guarded.stop()
        tokens.close()


# Identity tokens (OAuth2 refresh tokens) accepted, or not, only by the test TokenServer.
IDTOKEN = "idtok-from-docker-login"
WRONG_IDTOKEN = "idtok-WRONG-d41d8cd98f00b204"


def _token_guarded(tmp_path: Path, tokens: TokenServer) -> tuple[Registry, MadeImage]:
    """A registry holding ``private/img:1`` behind ``tokens`` (pushed while it was still open)."""
    private = make_image([{"p": b"private by identity token"}])
    plain = start_registry(tmp_path, "oauth")
    push_image(plain.url, "private/img", "1", private)
    plain.stop()
    cfg = json.loads(plain.config.read_text())
    cfg["auth"] = tokens.registry_auth()
    plain.config.write_text(json.dumps(cfg))
    return Registry(plain.root, plain.port, plain.config).start(), private


def _identity_config(tmp_path: Path, host: str, token: str) -> Path:
    cfg = tmp_path / "docker-config.json"
    cfg.write_text(json.dumps({"auths": {host: {"identitytoken": token}}}))
    return cfg


def test_identity_token_auth_with_rotating_refresh_token(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path, refresh_token=IDTOKEN, rotate=True)
    guarded, private = _token_guarded(tmp_path, tokens)
    try:
        config = _identity_config(tmp_path, guarded.host, IDTOKEN)
        before = config.read_bytes()
        opts = RegistryOptions(docker_config=config)
        locked = resolve_image(f"{guarded.host}/private/img:1", "linux/amd64", options=opts)
        assert locked.digest == private.digest
        # A second client (build after lock): the server retired the configured token at the first exchange,
        # so this only works because the rotated one was kept for the process.
        fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache", options=opts)
        for blob in (private.manifest, private.config, *private.layers):
            assert (tmp_path / "layout/blobs/sha256" / sha256(blob)[7:]).read_bytes() == blob
        posts = [c for c in tokens.calls if c.method == "POST"]
        assert len(posts) == 2 and not [c for c in tokens.calls if c.method == "GET"]
        for call in posts:
            assert call.content_type.startswith("application/x-www-form-urlencoded")
            assert call.form["grant_type"] == ["refresh_token"] and call.form["client_id"] == ["airpack"]
            assert call.form["service"] == ["airpack-test"]
            assert call.form["scope"] == ["repository:private/img:pull"]
            assert not call.query  # nothing in the URL, the refresh token least of all
        assert posts[0].form["refresh_token"] == [IDTOKEN]
        assert posts[1].form["refresh_token"][0].startswith("idtok-rotated-")
        assert config.read_bytes() == before  # the user's docker config is never rewritten
    finally:
        guarded.stop()
        tokens.close()


def test_wrong_identity_token_is_refused_without_echoing_it(tmp_path: Path) -> None:
    tokens = TokenServer(tmp_path, refresh_token=IDTOKEN)
    guarded, _ = _token_guarded(tmp_path, tokens)
    try:
        secret = WRONG_IDTOKEN
        opts = RegistryOptions(docker_config=_identity_config(tmp_path, guarded.host, secret))
        with pytest.raises(SourceError, match="credentials refused") as err:
            resolve_image(f"{guarded.host}/private/img:1", "linux/amd64", options=opts)
        assert secret not in str(err.value) and secret not in repr(err.value)
        assert "docker login" in str(err.value)
        assert [c.form["refresh_token"] for c in tokens.calls if c.method == "POST"] == [[secret]]
    finally:
        guarded.stop()
        tokens.close()


def test_credential_helper_token_username(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenServer(tmp_path, refresh_token=IDTOKEN)
    guarded, private = _token_guarded(tmp_path, tokens)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    asked = tmp_path / "helper-asked"
    helper = bindir / "docker-credential-airpacktest"
    helper.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 1
cat > '{asked}'
printf '%s' '{{"ServerURL":"{guarded.host}","Username":"<token>","Secret":"{IDTOKEN}"}}'
""")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "docker-config.json"
    config.write_text(json.dumps({"credHelpers": {guarded.host: "airpacktest"}}))
    try:
        opts = RegistryOptions(docker_config=config)
        locked = resolve_image(f"{guarded.host}/private/img:1", "linux/amd64", options=opts)
        assert locked.digest == private.digest
        assert asked.read_text() == guarded.host
        (call,) = tokens.calls
        assert (call.method, call.form["grant_type"], call.form["refresh_token"]) == \
            ("POST", ["refresh_token"], [IDTOKEN])
    finally:
        guarded.stop()
        tokens.close()


def test_identity_token_cannot_answer_basic_auth(tmp_path: Path) -> None:
    plain = start_registry(tmp_path, "basic")
    plain.stop()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    cfg = json.loads(plain.config.read_text())
    cfg["auth"] = {"htpasswd": {"realm": "airpack-test", "path": str(htpasswd)}}
    plain.config.write_text(json.dumps(cfg))
    basic = Registry(plain.root, plain.port, plain.config).start()
    try:
        opts = RegistryOptions(docker_config=_identity_config(tmp_path, basic.host, IDTOKEN))
        with pytest.raises(SourceError, match="only an identity token") as err:
            resolve_image(f"{basic.host}/any/img:1", "linux/amd64", options=opts)
        assert IDTOKEN not in str(err.value)
    finally:
        basic.stop()


def test_basic_auth_over_https_with_custom_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crypt = pytest.importorskip("crypt")  # bcrypt for htpasswd (Debian's libxcrypt supports $2b$)
    image = make_image([{"tls": b"secret image"}])
    plain = start_registry(tmp_path, "tls")
    push_image(plain.url, "sec/img", "1", image)
    plain.stop()
    cert, key = self_signed_tls(tmp_path)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"bob:{crypt.crypt('hunter2', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    cfg = json.loads(plain.config.read_text())
    cfg["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    cfg["auth"] = {"htpasswd": {"realm": "airpack-test", "path": str(htpasswd)}}
    plain.config.write_text(json.dumps(cfg))
    secure = Registry(plain.root, plain.port, plain.config, "https").start()
    try:
        ref = f"{secure.host}/sec/img:1"
        dockercfg = _docker_config(tmp_path, secure.host, "bob", "hunter2")
        https = frozenset({secure.host})
        ok = RegistryOptions(force_https=https, ca_file=cert, docker_config=dockercfg)
        assert resolve_image(ref, "linux/amd64", options=ok).digest == image.digest
        with pytest.raises(FetchError, match="TLS"):
            resolve_image(ref, "linux/amd64", options=RegistryOptions(force_https=https, docker_config=dockercfg))
        monkeypatch.setenv("AIRPACK_REGISTRY_CA", str(cert))
        env_ca = RegistryOptions(force_https=https, docker_config=dockercfg)
        locked = resolve_image(ref, "linux/amd64", options=env_ca)
        fetch_image(locked, tmp_path / "layout", cache_dir=tmp_path / "cache", options=env_ca)
        anonymous = RegistryOptions(force_https=https, docker_config=tmp_path / "none.json")
        with pytest.raises(SourceError, match="access denied"):
            resolve_image(ref, "linux/amd64", options=anonymous)
    finally:
        secure.stop()


def test_push_keeps_digests_skips_existing_and_resumes(reg: Registry, tmp_path: Path) -> None:
    big = make_image([SHARED, {"payload": os.urandom(1_500_000)}], label="push")
    push_image(reg.url, "t/push", "1", big)
    layout = tmp_path / "layout"
    locked = resolve_image(f"{reg.host}/t/push:1", "linux/amd64")
    fetch_image(locked, layout, cache_dir=tmp_path / "cache")
    internal = start_registry(tmp_path, "internal")
    proxy = FaultProxy(internal.url)
    try:
        proxy.fail_next("PATCH", "/blobs/uploads/")  # the first chunk upload dies without an answer
        refs = push_layout(layout, [locked], f"{proxy.host}/mirror", chunk_size=256 * 1024)
        assert refs == [f"{proxy.host}/mirror/t/push@{big.digest}"]
        patches = [p for m, p, _ in proxy.log if m == "PATCH"]
        assert len(patches) >= 6  # the 1.5 MB layer went in 256 KiB chunks
        assert any(m == "GET" and "/blobs/uploads/" in p for m, p, _ in proxy.log)  # asked where to resume
        info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{internal.host}/mirror/t/push:1"))
        assert info["Digest"] == big.digest
        raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false",
                                f"docker://{internal.host}/mirror/t/push:1"))
        assert raw == json.loads(big.manifest)
        assert internal.blob_file(sha256(big.layers[1])).read_bytes() == big.layers[1]
        proxy.log.clear()
        assert push_layout(layout, [locked], f"{proxy.host}/mirror") == refs
        assert not [p for m, p, _ in proxy.log if m in ("POST", "PATCH")]  # all blobs existed: none sent
    finally:
        proxy.close()
        internal.stop()
