# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""``airpack install --target compose|systemd|kubernetes`` with a real bundle (llama.cpp image + SmolLM2).

Compose really runs: ``docker-compose up -d`` against the engine, host networking on 127.0.0.1, and the
endpoint must answer ``/v1/chat/completions``. With ``CI=true`` a missing Compose fails instead of skipping.
systemd is not PID 1 here, so that target is checked for what it writes and prints (and ``systemd-analyze
verify`` where it exists); Kubernetes manifests are checked with ``kubernetes-validate``, not applied.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airpack.install.targets.commands import systemd_running
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
from tests.unit.render_helpers import check_kubernetes

pytestmark = [pytest.mark.integration, pytest.mark.docker]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEPLOY = ["compose", "systemd", "kubernetes"]


@dataclass
class Built:
    root: Path
    good: Path
    bad: Path
    pub: Path
    env: dict[str, str]
    client: Any

    def cli(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        out = subprocess.run(
            [sys.executable, "-m", "airpack", *args, "--json"],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        try:
            return out.returncode, json.loads(out.stdout), out.stderr
        except ValueError:
            raise AssertionError(f"no JSON from airpack {args}: {out.stdout}\n{out.stderr}") from None

    def install(self, bundle: Path, prefix: Path, target: str, *extra: str,
                env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        """``airpack install BUNDLE --key PUB --prefix PREFIX --target TARGET EXTRA… --json``."""
        return self.cli("install", str(bundle), "--key", str(self.pub), "--prefix", str(prefix),
                        "--target", target, *extra, env=env)


def _run(env: dict[str, str], *args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airpack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, f"airpack {args}: {out.stderr}"


def _spec(root: Path, name: str, image: str, args: list[str] | None = None) -> Path:
    runtime: dict[str, Any] = {
        "engine": "llamacpp",
        "image": image,
        "context": 2048,
        **({"args": args} if args else {}),
    }
    spec = {
        "apiVersion": "airpack/v1",
        "name": name,
        "version": "1.0.0",
        "model": {"path": "model"},
        "runtime": runtime,
        "target": {"gpus": 0, "vram": 4},
        "deploy": DEPLOY,
    }
    folder = root / name
    (folder / "model").mkdir(parents=True)
    os.link(root / "model" / GGUF, folder / "model" / GGUF)
    (folder / "airpack.yaml").write_text(json.dumps(spec))
    return folder / "airpack.yaml"


def _compose_projects(client: Any, root: Path) -> list[Any]:
    return [
        c
        for c in client.containers.list(all=True, filters={"label": "com.docker.compose.project"})
        if str(root) in json.dumps(c.labels)
    ]


@pytest.fixture(scope="module")
def built(
    docker_engine: DockerEngine,
    upstream_registry: Registry,
    llama_server_image: BuiltImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("targets")
    smollm2_model(root)
    env = cli_env(docker_engine.host, root / "cache")
    ref = push_to(docker_engine, llama_server_image.local, upstream_registry)
    _run(env, "keygen", "--out", str(root / "keys"))
    bundles = []
    for name, args in (("smollm2-targets", None), ("smollm2-tbroken", ["--no-such-flag"])):
        spec = _spec(root, name, ref, args)
        _run(env, "lock", str(spec))
        _run(
            env,
            "build",
            str(spec),
            "--out",
            str(root / f"{name}.bundle"),
            "--key",
            str(root / "keys/airpack.key"),
        )
        bundles.append(root / f"{name}.bundle")
    client = docker_engine.client
    try:
        yield Built(root, bundles[0], bundles[1], root / "keys/airpack.pub", env, client)
    finally:
        for c in _compose_projects(client, root):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        with contextlib.suppress(Exception):  # keep the session's tag; drop the ones the installs added
            for extra in client.api.inspect_image(llama_server_image.image_id)["RepoTags"]:
                if extra != llama_server_image.local:
                    client.api.remove_image(extra)


def _compose(built: Built) -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("docker-compose (or the docker compose plugin) is needed with CI=true")
    pytest.skip("neither docker-compose nor docker compose is installed")


def _chat(port: int, key: str | None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps(
        {"messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8, "temperature": 0}
    )
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_compose_target_runs_and_answers(built: Built) -> None:
    base = _compose(built)
    prefix = built.root / "prefix-compose"
    port = free_port()
    rc, out, err = built.install(built.good, prefix, "compose", "--port", str(port))
    assert rc == 0, (out["error"], err)
    data = out["data"]
    project, file = data["composeProject"], data["composeFile"]
    try:
        assert data["started"] and data["target"] == "compose" and data["commands"] == []
        assert data["smoke"]["ok"] and data["smoke"]["completionTokens"] > 0
        assert data["endpoint"] == f"http://127.0.0.1:{port}/v1"
        assert file == str(prefix / "deploy/compose.yaml") and data["deployFiles"] == ["deploy/compose.yaml"]
        assert f'+      - "{port}"' in data["deployDiff"] and "+    network_mode: host" in data["deployDiff"]

        # Compose itself started it, with host networking, from the signed image and the copied weights.
        ids = subprocess.run(
            [*base, "-f", file, "-p", project, "ps", "-q"],
            capture_output=True,
            text=True,
            env=built.env,
            check=True,
        ).stdout.split()
        assert len(ids) == 1
        container = built.client.containers.get(ids[0])
        assert container.labels["com.docker.compose.project"] == project
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.attrs["Image"] == json.loads((built.good / "airpack.json").read_text())["images"][0][
            "configDigest"]  # run by ID, not by the airpack.local tag
        hc = container.attrs["HostConfig"]
        assert hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges:true"]
        assert hc["ReadonlyRootfs"] is True and "/tmp" in hc["Tmpfs"]
        assert (prefix / "model" / GGUF).stat().st_ino != (built.good / "model" / GGUF).stat().st_ino

        status, answer = _chat(port, data["apiKey"])
        assert status == 200 and answer["choices"][0]["message"]["content"].strip()
        assert _chat(port, None)[0] == 401

        rc, st, _ = built.cli("status", "--prefix", str(prefix))
        assert rc == 0 and st["data"]["healthy"] and st["data"]["containerId"] == ids[0]
        record = json.loads((prefix / "airpack-install.json").read_text())
        assert record["target"] == "compose" and record["composeProject"] == project

        # Installing again at the prefix takes the old project down first: one container, a new one.
        rc, again, err = built.install(built.good, prefix, "compose", "--port", str(port))
        assert rc == 0, (again["error"], err)
        assert again["data"]["apiKey"] is None and again["data"]["smoke"]["ok"]  # the key is kept
        now = [c.id for c in _compose_projects(built.client, prefix)]
        assert len(now) == 1 and now[0] != ids[0]
        assert _chat(port, data["apiKey"])[0] == 200
    finally:
        subprocess.run(
            [*base, "-f", file, "-p", project, "down", "--timeout", "5"],
            env=built.env,
            capture_output=True,
            check=False,
        )
    assert _compose_projects(built.client, prefix) == []


def test_compose_target_unhealthy_exits_4_and_takes_the_project_down(built: Built) -> None:
    _compose(built)
    prefix = built.root / "prefix-compose-broken"
    rc, out, _ = built.install(built.bad, prefix, "compose", "--port", str(free_port()))
    assert rc == 4, out
    assert "invalid argument: --no-such-flag" in out["error"] and "taken down" in out["error"]
    assert _compose_projects(built.client, prefix) == []
    assert not (prefix / "airpack-install.json").exists()


def test_systemd_target_without_systemd_writes_units_and_prints_commands(built: Built) -> None:
    if systemd_running():
        pytest.skip("systemd is PID 1 here: this test checks the host without it (it would install a unit)")
    prefix = built.root / "prefix-systemd"
    rc, out, _ = built.install(built.good, prefix, "systemd", "--port", str(free_port()))
    assert rc == 0, out["error"]
    data = out["data"]
    vid = data["versionId"]
    home = prefix / "versions" / vid  # the version's own folder: its weights and its units
    unit = home / "deploy/systemd/airpack-smollm2-targets.service"
    quadlet = home / "deploy/systemd/airpack-smollm2-targets.container"
    assert data["started"] is False  # PID 1 is not systemd in this environment
    assert data["commands"] == [
        f"install -m 0644 {unit} /etc/systemd/system/{unit.name}",
        "systemctl daemon-reload",
        f"systemctl enable --now {unit.name}",
    ]
    assert data["alternativeCommands"][0].endswith(f"/etc/containers/systemd/{quadlet.name}")
    text = unit.read_text()
    assert "{{" not in text and "--network=host" in text and f"{home}/model:/models:ro" in text
    assert f"{prefix}/model:" not in text  # the unit names its version's weights, never the link
    assert f"{prefix}/secrets/api-key" in text and "Network=host" in quadlet.read_text()
    assert f"{home}/model:/models:ro" in quadlet.read_text()
    assert (home / "model" / GGUF).is_file() and (prefix / "secrets/api-key").is_file()
    assert (prefix / "model").resolve() == (home / "model").resolve()  # model -> current/model
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["target"], record["active"], record["previous"], record["pending"]) == \
        ("systemd", vid, None, None)
    assert record["unit"] == unit.name
    state = json.loads((home / "state.json").read_text())
    assert state["target"] == "systemd" and state["started"] is False and state["unitFile"] == str(unit)
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
        )
        problems = [
            line
            for line in verify.stderr.splitlines()
            if line.strip()
            and "docker.service" not in line
            and "/usr/bin/docker" not in line
            and "System has not been booted with systemd" not in line
        ]
        assert problems == [], verify.stderr


def test_a_new_key_is_printed_alone_on_stdout_never_in_the_summary(built: Built) -> None:
    """As the docker target does: ``KEY=$(airpack install … --target systemd)`` gets the key and nothing else."""
    prefix = built.root / "prefix-key-stdout"
    out = subprocess.run(
        [sys.executable, "-m", "airpack", "install", str(built.good), "--key", str(built.pub), "--prefix",
         str(prefix), "--target", "systemd", "--port", str(free_port())],
        env=built.env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stderr
    key = (prefix / "secrets/api-key").read_text().strip()
    assert out.stdout == key + "\n"
    assert key not in out.stderr and "API key (shown once, on stdout" in out.stderr


def test_kubernetes_target_writes_valid_manifests_and_secret(built: Built) -> None:
    prefix = built.root / "prefix-k8s"
    rc, out, _ = built.install(built.good, prefix, "kubernetes")
    assert rc == 2 and "--registry" in out["error"]
    env = {**built.env, "PATH": str(Path(sys.executable).parent)}  # no kubectl: --apply prints the commands
    rc, out, _ = built.install(built.good, prefix, "kubernetes", "--registry", "registry.internal:5000/ai",
                               "--apply", env=env)
    assert rc == 0, out["error"]
    data = out["data"]
    folder = prefix / "deploy/kubernetes"
    assert data["started"] is False and data["applied"] is False
    assert data["commands"][-1] == f"kubectl apply -f {folder}"
    assert "airpack push" in data["commands"][0] and "registry.internal:5000/ai" in data["commands"][0]
    secret = folder / "secret-api-key.yaml"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    kinds = {
        doc["kind"]: doc
        for path in sorted(folder.glob("*.yaml"))
        for doc in check_kubernetes(path.read_bytes())
    }
    assert {"Deployment", "Service", "NetworkPolicy", "Secret"} <= set(kinds)
    image = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("registry.internal:5000/ai/") and "@sha256:" in image
    key = (prefix / "secrets/api-key").read_text().strip()
    assert base64.b64decode(kinds["Secret"]["data"]["api-key"]).decode() == key
    assert "registry.invalid" in data["deployDiff"] and "registry.internal:5000/ai" in data["deployDiff"]


def test_inspect_diff_covers_every_target_the_bundle_carries(built: Built, tmp_path: Path) -> None:
    from airpack.errors import VerificationError
    from airpack.install.deploy_files import bundle_deploy_diff
    from airpack.signing import keygen, load_public_key

    other = keygen(tmp_path, name="other").public_path
    with pytest.raises(VerificationError):  # nothing is rendered before the signature checks out
        bundle_deploy_diff(built.good, [load_public_key(other)])
    diffs = bundle_deploy_diff(built.good, [load_public_key(built.pub)])
    assert set(diffs) == set(DEPLOY)
    assert "+    network_mode: host" in diffs["compose"] and "+  --network=host \\" in diffs["systemd"]
    assert "registry.invalid" in diffs["kubernetes"] and "registry.local/" in diffs["kubernetes"]
