# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""End to end on CPU with real parts: a registry, the llama.cpp server image, SmolLM2, a docker engine.

Build side: push the llama-server image to a local registry, write a spec that names it there, then lock,
build and sign through the CLI. Far side: the registry is stopped and a listener that counts connections takes
its port (and another stands in for the Hugging Face Hub); the images are deleted from the engine;
``HF_HUB_OFFLINE=1``. Then ``airpack install`` must work from the bundle alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from airpack.errors import VerificationError
from airpack.install import InstallOptions, install
from airpack.install.engine import LABEL_PREFIX
from airpack.signing import load_public_key
from airpack.verify import verify_bundle
from tests.dockerenv import (  # noqa: F401 - fixtures are used by name
    BuiltImage,
    DockerEngine,
    Registry,
    docker_engine,
    free_port,
    llama_server_image,
    push_to,
    upstream_registry,
)
from tests.install_helpers import cli_env, smollm2_model

pytestmark = [pytest.mark.integration, pytest.mark.docker]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Trap:
    """A TCP listener on 127.0.0.1 that counts (and drops) every connection made to it."""

    def __init__(self, port: int) -> None:
        self.port, self.hits = port, 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


@dataclass
class Far:
    """The far side of the gap: two signed bundles, the key, the traps, the CLI environment."""

    root: Path
    good: Path
    bad: Path
    pub: Path
    config_digest: str
    traps: tuple[Trap, Trap]
    env: dict[str, str]
    client: Any

    def cli(self, *args: str, timeout: float = 300) -> tuple[int, dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "airpack", *args, "--json"], env=self.env,
                             capture_output=True, text=True, timeout=timeout, check=False)
        try:
            return out.returncode, json.loads(out.stdout)
        except ValueError:
            raise AssertionError(f"no JSON from airpack {args}: {out.stdout}\n{out.stderr}") from None

    def hits(self) -> int:
        return sum(t.hits for t in self.traps)

    def containers(self, prefix: Path) -> list[Any]:
        return self.client.containers.list(all=True, filters={"label": f"{LABEL_PREFIX}={prefix}"})


def _run(env: dict[str, str], *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "airpack", *args], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, f"airpack {args}: {out.stderr}"


def _spec(root: Path, name: str, image: str, args: list[str] | None = None) -> Path:
    runtime: dict[str, Any] = {"engine": "llamacpp", "image": image, "context": 2048}
    if args:
        runtime["args"] = args
    spec = {"apiVersion": "airpack/v1", "name": name, "version": "1.0.0", "model": {"path": "model"},
            "runtime": runtime, "target": {"gpus": 0, "vram": 4}, "deploy": ["compose"]}
    folder = root / name
    (folder / "model").mkdir(parents=True)
    os.link(root / "model" / GGUF, folder / "model" / GGUF)  # two build sources, one copy of the bytes
    (folder / "airpack.yaml").write_text(json.dumps(spec))
    return folder / "airpack.yaml"


def _remove_images(client: Any, image_id: str) -> None:
    with contextlib.suppress(Exception):
        client.api.remove_image(image_id, force=True)


@pytest.fixture(scope="module")
def far(docker_engine: DockerEngine, upstream_registry: Registry, llama_server_image: BuiltImage,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Far]:
    root = tmp_path_factory.mktemp("e2e")
    smollm2_model(root)
    env = cli_env(docker_engine.host, root / "cache")
    ref = push_to(docker_engine, llama_server_image.local, upstream_registry)
    _run(env, "keygen", "--out", str(root / "keys"))
    bundles = []
    for name, args in (("smollm2-e2e", None), ("smollm2-broken", ["--no-such-flag"])):
        spec = _spec(root, name, ref, args)
        _run(env, "lock", str(spec))
        _run(env, "build", str(spec), "--out", str(root / f"{name}.bundle"), "--key", str(root / "keys/airpack.key"))
        bundles.append(root / f"{name}.bundle")
    manifest = json.loads((bundles[0] / "airpack.json").read_text())
    config_digest = next(i["configDigest"] for i in manifest["images"] if i["role"] == "runtime")
    assert config_digest == llama_server_image.image_id  # the registry round trip keeps the image ID

    # The air gap: nothing upstream answers, and anything that tries is counted.
    client = docker_engine.client
    upstream_registry.stop()
    traps = (Trap(upstream_registry.port), Trap(free_port()))
    env.update({"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": f"http://127.0.0.1:{traps[1].port}"})
    _remove_images(client, config_digest)
    with pytest.raises(docker.errors.ImageNotFound):
        client.api.inspect_image(config_digest)
    far = Far(root, bundles[0], bundles[1], root / "keys/airpack.pub", config_digest, traps, env, client)
    try:
        yield far
    finally:
        for c in client.containers.list(all=True, filters={"label": LABEL_PREFIX}):
            if str(root) in c.labels.get(LABEL_PREFIX, ""):
                c.remove(force=True)
        for t in traps:
            t.close()
        upstream_registry.start()
        # Give the session its local tag back (the install loaded the same image ID from the bundle), and
        # drop the tags this module added.
        with contextlib.suppress(Exception):
            repo, _, tag = llama_server_image.local.rpartition(":")
            client.api.tag(config_digest, repo, tag)
            for extra in client.api.inspect_image(config_digest)["RepoTags"]:
                if extra != llama_server_image.local:
                    client.api.remove_image(extra)


def _chat(port: int, key: str | None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8,
                       "temperature": 0})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_install_in_the_air_gap(far: Far) -> None:
    prefix = far.root / "prefix"
    port = free_port()
    rc, out = far.cli("install", str(far.good), "--key", str(far.pub), "--prefix", str(prefix), "--port", str(port))
    assert rc == 0, out["error"]
    data = out["data"]
    assert far.hits() == 0
    checks = {c["name"]: c["status"] for c in data["doctor"]["checks"]}
    assert checks["gpus"] == checks["nvidia-driver"] == "pass"  # a CPU bundle on a CPU host
    assert checks["memory"] == "pass"  # the signed CPU plan's RAM need was compared with this host
    assert data["endpoint"] == f"http://127.0.0.1:{port}/v1"
    assert data["smoke"]["ok"] and data["smoke"]["completionTokens"] > 0 and data["smoke"]["ttftSeconds"] > 0
    assert data["digest"] == hashlib.sha256((far.good / "SHA256SUMS").read_bytes()).hexdigest()

    # The answering container runs the signed image, with the weights copied (not linked) under the prefix.
    container = far.client.containers.get(data["containerId"])
    assert container.attrs["Image"] == far.config_digest
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    hc = container.attrs["HostConfig"]  # confined (issue #14 item 10), and llama.cpp still answers below
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"] and hc["SecurityOpt"] == ["no-new-privileges:true"]
    assert hc["ReadonlyRootfs"] is True and "exec" in hc["Tmpfs"]["/tmp"]
    weights = prefix / "model" / GGUF
    assert weights.stat().st_ino != (far.good / "model" / GGUF).stat().st_ino
    key_file = prefix / "secrets/api-key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and key_file.read_text().strip() == data["apiKey"]
    assert "--api-key-file" in (prefix / "deploy/compose.yaml").read_text()
    assert f'"{port}"' in (prefix / "deploy/compose.yaml").read_text()  # rendered with this host's values

    status, answer = _chat(port, data["apiKey"])
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"].strip()
    assert answer["usage"]["completion_tokens"] > 0
    assert _chat(port, None)[0] == 401  # the key is required

    rc, st = far.cli("status", "--prefix", str(prefix))
    assert rc == 0 and st["data"]["healthy"] and st["data"]["name"] == "smollm2-e2e"
    assert st["data"]["version"] == "1.0.0" and st["data"]["smoke"]["ok"]
    assert st["data"]["container"]["status"] == "running"

    rc, gone = far.cli("uninstall", "--prefix", str(prefix))
    assert rc == 0 and gone["data"]["containersRemoved"] == [data["containerId"]]
    assert far.containers(prefix) == [] and weights.exists()  # weights stay unless asked
    assert far.hits() == 0


def test_weight_corrupted_after_verify_fails_with_nothing_started(far: Far, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", far.env["DOCKER_HOST"])
    vb = verify_bundle(far.good, [load_public_key(far.pub)])
    weight = far.good / "model" / GGUF
    with weight.open("r+b") as fh:  # the medium lies on the second read: one byte differs
        fh.seek(50_000_000)
        byte = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    prefix = far.root / "prefix-corrupt"
    before = {c.id for c in far.client.containers.list(all=True)}
    try:
        with pytest.raises(VerificationError, match="changed since it was verified") as exc:
            install(vb, InstallOptions(prefix=prefix, port=free_port()), client=far.client)
        assert exc.value.exit_code == 3
    finally:
        with weight.open("r+b") as fh:
            fh.seek(50_000_000)
            fh.write(byte)
    assert {c.id for c in far.client.containers.list(all=True)} == before and far.containers(prefix) == []
    assert not (prefix / "model").exists() and not (prefix / "airpack-install.json").exists()
    assert far.hits() == 0


def test_engine_that_never_gets_healthy_exits_4_and_leaves_no_container(far: Far) -> None:
    prefix = far.root / "prefix-broken"
    rc, out = far.cli("install", str(far.bad), "--key", str(far.pub), "--prefix", str(prefix),
                      "--port", str(free_port()))
    assert rc == 4, out
    assert "invalid argument: --no-such-flag" in out["error"]  # the container's last log lines
    assert far.containers(prefix) == []
    assert not (prefix / "airpack-install.json").exists()
    assert far.hits() == 0
