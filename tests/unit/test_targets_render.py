"""The compose/systemd/kubernetes install targets without an engine: which deploy files each uses, the host
render and its diff, the commands an operator is given, the API-key Secret, options and the CLI's exit codes."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from airpack.cli import app
from airpack.cli.far_side import render_text
from airpack.errors import InstallError, UsageError
from airpack.install import InstallOptions, targets
from airpack.install.host import InstallState, write_deploy
from airpack.install.results import InstallResult
from airpack.install.targets import commands as tr
from airpack.render import HostParams, default_host_params, host_diff, render_bundle_deploy, render_host
from tests.unit.render_helpers import check_docker_compose, check_kubernetes, context

ALL = ["compose", "systemd", "kubernetes"]


@pytest.fixture(scope="module")
def deploy() -> dict[str, bytes]:
    return render_bundle_deploy(context("llamacpp", gpus=0), ALL)


def host(prefix: str = "/srv/ap/demo", **kw: object) -> HostParams:
    return HostParams(
        prefix=prefix, port=8123, gpus=0, network="host", api_key_file=f"{prefix}/secrets/api-key",
        model_digest="sha256:" + "ef" * 32, **kw
    )  # type: ignore[arg-type]


def test_each_target_takes_only_its_files(deploy: dict[str, bytes]) -> None:
    assert list(targets.get("compose").deploy_files(deploy)) == ["compose.yaml"]
    assert list(targets.get("systemd").deploy_files(deploy)) == [
        "systemd/airpack-demo-model.container",
        "systemd/airpack-demo-model.service",
    ]
    assert set(targets.get("kubernetes").deploy_files(deploy)) == {
        "kubernetes/deployment.yaml",
        "kubernetes/service.yaml",
        "kubernetes/networkpolicy.yaml",
    }
    ollama = render_bundle_deploy(context("ollama", gpus=0), ["compose"])
    assert set(targets.get("compose").deploy_files(ollama)) == {"compose.yaml", "ollama/Modelfile"}


def test_a_target_the_bundle_was_not_built_for_is_refused(deploy: dict[str, bytes]) -> None:
    only_compose = {k: v for k, v in deploy.items() if k == "compose.yaml"}
    with pytest.raises(InstallError, match=r"no deploy files for systemd .*deploy/systemd/") as exc:
        targets.get("systemd").deploy_files(only_compose)
    assert "deploy: in the spec" in str(exc.value)
    with pytest.raises(UsageError, match="not one of docker, compose, systemd, kubernetes"):
        targets.get("nomad")


def test_compose_render_uses_host_networking_and_the_key(deploy: dict[str, bytes], tmp_path: Path) -> None:
    out = render_host(targets.get("compose").deploy_files(deploy), host())["compose.yaml"]
    doc = yaml.safe_load(out)
    svc = doc["services"]["demo-model"]
    assert svc["network_mode"] == "host" and "ports" not in svc and svc["pull_policy"] == "never"
    assert {
        "type": "bind",
        "source": "/srv/ap/demo/secrets/api-key",
        "target": "/run/airpack-secrets/api-key",
        "read_only": True,
    } in svc["volumes"]
    assert "8123" in svc["command"] and "--api-key-file" in svc["command"]
    check_docker_compose(out, tmp_path)


def test_kubernetes_render_and_secret_validate(deploy: dict[str, bytes]) -> None:
    params = host(registry="reg.internal:5000/ai")
    files = render_host(targets.get("kubernetes").deploy_files(deploy), params)
    docs = [d for data in files.values() for d in check_kubernetes(data)]
    image = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image.startswith("reg.internal:5000/ai/ghcr.io/example/llamacpp@sha256:")
    secret = tr.api_key_secret("demo-model", "ap-secret-value")
    (doc,) = check_kubernetes(secret)
    assert doc["metadata"]["name"] == "demo-model-api-key"
    assert base64.b64decode(doc["data"]["api-key"]) == b"ap-secret-value"
    volumes = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "api-key",
        "secret": {
            "secretName": "demo-model-api-key",
            "defaultMode": 0o444,
            "items": [{"key": "api-key", "path": "api-key"}],
        },
    } in volumes


def test_diff_from_the_as_built_defaults_shows_only_host_values(deploy: dict[str, bytes]) -> None:
    chosen = targets.get("compose").deploy_files(deploy)
    diff = host_diff(chosen, host(), default_host_params("demo-model"))
    assert diff.startswith("--- default/deploy/compose.yaml\n+++ host/deploy/compose.yaml\n")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert any("8123" in line for line in changed) and "+    network_mode: host" in changed
    assert '+      - "8123"' in changed and '+      - "--api-key-file"' in changed
    assert not any(".gguf" in c or "image:" in c for c in changed)  # the engine and model are as built
    assert host_diff(chosen, host(), host()) == ""


def test_commands_are_shell_lines_an_operator_can_paste() -> None:
    unit = Path("/srv/ap/my dir/deploy/systemd/airpack-demo.service")
    lines = [tr.shell_line(c) for c in tr.systemd_commands(unit)]
    assert lines == [
        (
            "install -m 0644 '/srv/ap/my dir/deploy/systemd/airpack-demo.service' "
            "/etc/systemd/system/airpack-demo.service"
        ),
        "systemctl daemon-reload",
        "systemctl enable --now airpack-demo.service",
    ]
    quad = tr.quadlet_commands(unit.with_suffix(".container"))
    assert quad[-1] == ["systemctl", "start", "airpack-demo.service"]
    assert quad[0][-1] == "/etc/containers/systemd/airpack-demo.container"
    assert tr.kubectl_commands(Path("/p/deploy/kubernetes")) == [
        ["kubectl", "apply", "-f", "/p/deploy/kubernetes"]
    ]


def test_compose_project_is_stable_per_prefix_and_a_valid_name() -> None:
    a, b = tr.compose_project("demo", Path("/a")), tr.compose_project("demo", Path("/b"))
    assert a == tr.compose_project("demo", Path("/a")) and a != b
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", a)


def test_options_are_checked_when_built() -> None:
    with pytest.raises(UsageError, match="not one of docker, compose"):
        InstallOptions(prefix=Path("/p"), target="nomad")
    with pytest.raises(UsageError, match="needs --registry") as exc:
        InstallOptions(prefix=Path("/p"), target="kubernetes")
    assert exc.value.exit_code == 2
    assert InstallOptions(prefix=Path("/p"), target="kubernetes", registry="r:5000").apply is False


def test_write_deploy_replaces_the_folder_and_keeps_the_secret_private(tmp_path: Path) -> None:
    (tmp_path / "deploy/old").mkdir(parents=True)
    written = write_deploy(
        tmp_path,
        {"kubernetes/a.yaml": b"a", "kubernetes/secret.yaml": b"s"},
        frozenset({"kubernetes/secret.yaml"}),
    )
    assert written == ["deploy/kubernetes/a.yaml", "deploy/kubernetes/secret.yaml"]
    assert not (tmp_path / "deploy/old").exists()
    assert (tmp_path / "deploy/kubernetes/secret.yaml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "deploy/kubernetes/a.yaml").stat().st_mode & 0o777 == 0o644


def _result(**kw: object) -> InstallResult:
    state = InstallState(
        name="demo", version="1.0.0", digest="d" * 64, key_fingerprint="SHA256:k", target="systemd",
        endpoint="http://127.0.0.1:8000/v1", container_id="airpack-demo", container_name="airpack-demo",
        image_id="sha256:i", image_tags=(), bind="127.0.0.1", port=8000, network="host",
        api_key_file="/p/secrets/api-key", installed="2026-01-01T00:00:00Z",
    )
    base: dict[str, object] = {
        "state": state,
        "prefix": "/p",
        "started": False,
        "served_name": "demo",
        "deploy_files": ("deploy/systemd/a.service",),
        "deploy_diff": "--- a\n+++ b\n",
        "commands": ("systemctl daemon-reload",),
        "alternatives": (),
        "api_key": None,
        "api_key_file": "/p/secrets/api-key",
        "endpoint": "http://127.0.0.1:8000/v1",
        "smoke": None,
    }
    return InstallResult(**{**base, **kw})  # type: ignore[arg-type]


def test_text_output_says_what_to_run_and_shows_the_diff_on_request() -> None:
    text = render_text(_result())
    assert "NOT started" in text and "run these to start it:\n  systemctl daemon-reload" in text
    assert "endpoint" not in text and "--- a" not in text
    assert "--- a\n+++ b" in render_text(_result(), show_diff=True)
    started = render_text(
        _result(started=True, commands=(), api_key="ap-k", smoke={"completionTokens": 3, "ttftSeconds": 0.1})
    )
    assert (
        "endpoint: http://127.0.0.1:8000/v1" in started and "ap-k" not in started and "run these" not in started
    )
    assert "API key (shown once, on stdout; stored in /p/secrets/api-key)" in started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nomad"], "not one of docker"),
        (["--target", "kubernetes"], "needs --registry"),
    ],
)
def test_cli_refuses_bad_target_options_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(
        app,
        [
            "install",
            str(tmp_path / "missing.bundle"),
            "--key",
            str(tmp_path / "k.pub"),
            "--prefix",
            str(tmp_path / "p"),
            *args,
        ],
    )
    assert res.exit_code == 2 and message in res.stderr
    assert not (tmp_path / "p").exists()
