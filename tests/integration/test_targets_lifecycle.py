# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""The install lifecycle of ``--target compose`` with real parts: a docker engine, docker-compose, the
llama.cpp server image and three signed SmolLM2 bundles of one name (1.0.0 context 2048, 1.1.0 context 1024,
1.2.0 whose engine cannot start), all through the CLI as a subprocess.

Proves: versions under ``versions/<id>/`` with their own ``compose.yaml`` and Compose project; an upgrade keeps
the old project stopped; a failed upgrade exits 4, takes the new project down and the old one answers again;
rollback both ways; uninstall of one version and of all (``docker-compose down``: no container left); the audit
log; SIGKILL of a real compose upgrade at ``stopping`` and ``health`` followed by ``status`` (which reports the
unfinished switch and writes nothing) and the next command, which undoes it.
Kubernetes (no cluster, no kubectl here): manifests per version, the commands a rollback prints, and uninstall
without a Docker engine (``kubectl delete`` printed, or run by a stand-in kubectl for a version it applied).
systemd (not PID 1 here): two versions, each with its own units, rollback both ways and uninstall of one
version and of all, the last three without a Docker engine; only the commands are given.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airpack.install.targets.commands import compose_project, systemd_running
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
from tests.install_helpers import (
    Versions,
    answers,
    audit_lines,
    build_versions,
    chat,
    cli,
    cli_env,
    ctx_arg,
    smollm2_model,
    status_data,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]
NAME = "smollm2-clife"


@dataclass
class Life(Versions):
    def containers(self, prefix: Path) -> list[Any]:
        """Every container of every Compose project of this prefix (one project per version)."""
        base = compose_project(NAME, prefix)
        found = self.client.containers.list(all=True, filters={"label": "com.docker.compose.project"})
        return [c for c in found if c.labels["com.docker.compose.project"].startswith(f"{base}-")]


def _has_compose() -> bool:
    if shutil.which("docker-compose"):
        return True
    return bool(shutil.which("docker")) and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def life(docker_engine: DockerEngine, upstream_registry: Registry, llama_server_image: BuiltImage,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Life]:
    if not _has_compose():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("docker-compose (or the docker compose plugin) is needed with CI=true")
        pytest.skip("neither docker-compose nor docker compose is installed")
    root = tmp_path_factory.mktemp("clife")
    smollm2_model(root)
    env = cli_env(docker_engine.host, root / "cache")
    ref = push_to(docker_engine, llama_server_image.local, upstream_registry)
    bundles, pub = build_versions(root, NAME, ref, env, [("1.0.0", 2048, None), ("1.1.0", 1024, None),
                                                         ("1.2.0", 1024, ["--no-such-flag"])],
                                  deploy=["compose", "kubernetes", "systemd"])
    life = Life(root, bundles, pub, env, docker_engine.client, target="compose")
    try:
        yield life
    finally:
        for c in docker_engine.client.containers.list(all=True, filters={"label": "com.docker.compose.project"}):
            if c.labels.get("io.airpack.bundle") == NAME:
                with contextlib.suppress(Exception):
                    c.remove(force=True)
        with contextlib.suppress(Exception):
            if ref != llama_server_image.local:
                docker_engine.client.api.remove_image(ref)




def _by_version(life: Life, prefix: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in life.containers(prefix):
        out.setdefault(c.labels["io.airpack.version"], []).append(c.status)
    return out


def test_compose_upgrade_failed_upgrade_rollback_uninstall(life: Life) -> None:
    prefix, port = life.root / "prefix", free_port()
    rc, first = life.install("1.0.0", prefix, port)
    assert rc == 0, first["error"]
    vid1 = first["data"]["versionId"]
    assert Path(first["data"]["composeVersionFile"]) == prefix / "versions" / vid1 / "deploy/compose.yaml"
    assert str(prefix / "versions" / vid1 / "model") in Path(first["data"]["composeVersionFile"]).read_text()
    assert answers(port, prefix)

    rc, up = life.install("1.1.0", prefix, port)
    assert rc == 0, up["error"]
    assert up["data"]["composeProject"] != first["data"]["composeProject"]
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["healthy"] and st["endpoint"] == f"http://127.0.0.1:{port}/v1"
    assert st["active"].startswith("1.1.0-") and st["previous"] == vid1
    assert _by_version(life, prefix) == {"1.0.0": ["exited"], "1.1.0": ["running"]}  # the old one is kept
    assert ctx_arg(life, st["containerId"]) == "1024"
    assert (prefix / "model").resolve() == (prefix / "versions" / st["active"] / "model").resolve()
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert record["stateVersion"] == 2 and record["target"] == "compose"
    assert record["composeProject"] == up["data"]["composeProject"]
    assert answers(port, prefix)

    rc, bad = life.install("1.2.0", prefix, port)
    assert rc == 4, bad
    assert "--no-such-flag" in bad["error"] and "taken down" in bad["error"]
    assert "answering again" in bad["error"]
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["healthy"] and st["pending"] is None
    assert _by_version(life, prefix) == {"1.0.0": ["exited"], "1.1.0": ["running"]}
    assert not list((prefix / "versions").glob("1.2.0-*")) and not list((prefix / "versions").glob(".*"))
    assert answers(port, prefix)

    rc, back = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0, back["error"]
    assert back["data"]["version"] == "1.0.0" and back["data"]["previousVersion"] == "1.1.0"
    st = status_data(life, prefix)
    assert st["version"] == "1.0.0" and st["healthy"] and st["previous"].startswith("1.1.0-")
    assert _by_version(life, prefix) == {"1.0.0": ["running"], "1.1.0": ["exited"]}
    assert ctx_arg(life, st["containerId"]) == "2048" and answers(port, prefix)
    assert json.loads((prefix / "airpack-install.json").read_text())["composeProject"] == \
        first["data"]["composeProject"]
    rc, forth = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0 and forth["data"]["version"] == "1.1.0"
    assert answers(port, prefix)

    rc, one = life.cli("uninstall", "--prefix", str(prefix), "--version", "1.0.0")
    assert rc == 0, one["error"]
    assert one["data"]["composeProjectsDown"] == [first["data"]["composeProject"]]
    assert _by_version(life, prefix) == {"1.1.0": ["running"]} and answers(port, prefix)

    log = audit_lines(prefix)
    actions = [(e["action"], e["version"], e["outcome"]) for e in log]
    assert actions == [
        ("verify", "1.0.0", "ok"), ("install", "1.0.0", "ok"), ("verify", "1.1.0", "ok"),
        ("upgrade", "1.1.0", "ok"), ("verify", "1.2.0", "ok"), ("upgrade", "1.2.0", "failed"),
        ("rollback", "1.0.0", "ok"), ("rollback", "1.1.0", "ok"), ("uninstall", "1.0.0", "ok"),
    ]
    assert "--no-such-flag" in log[5]["reason"] and "answering again" in log[5]["reason"]

    rc, gone = life.cli("uninstall", "--prefix", str(prefix), "--all", "--remove-weights")
    assert rc == 0, gone["error"]
    assert life.containers(prefix) == [] and chat(port, None, timeout=5)[0] is None
    assert not (prefix / "versions").exists() and audit_lines(prefix)[-1]["action"] == "uninstall"


def _phase(prefix: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
        pending = json.loads((prefix / "airpack-install.json").read_text())["pending"]
        return str(pending["phase"]) if pending else None
    return None


def _kill_at(life: Life, argv: list[str], prefix: Path, phase: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "airpack", *argv, "--json"], env=life.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while _phase(prefix) != phase:
            if proc.poll() is not None:
                raise AssertionError(f"airpack exited {proc.returncode} first: {proc.communicate()[1]}")
            assert time.monotonic() < deadline, f"never reached {phase}"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


def test_compose_sigkill_during_upgrade_then_status_or_rerun(life: Life) -> None:
    prefix, port = life.root / "prefix-kill", free_port()
    assert life.install("1.0.0", prefix, port)[0] == 0

    # Killed once the new project is starting (the old one stopped): status reports the unfinished upgrade and
    # writes nothing; the next command that takes the prefix (a rollback, here with nothing to roll back to)
    # undoes it first, and 1.0.0 answers again.
    _kill_at(life, life.argv("1.1.0", prefix, port), prefix, "health")
    record = (prefix / "airpack-install.json").read_bytes()
    st = status_data(life, prefix)
    assert st["version"] == "1.0.0" and (st["pending"]["op"], st["pending"]["phase"]) == ("upgrade", "health"), st
    assert (prefix / "airpack-install.json").read_bytes() == record
    rc, out = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 2 and "no previous version" in out["error"], out
    st = status_data(life, prefix)
    assert st["version"] == "1.0.0" and st["healthy"] and st["pending"] is None, st
    assert _by_version(life, prefix) == {"1.0.0": ["running"]} and answers(port, prefix)
    assert not list((prefix / "versions").glob("1.1.0-*"))

    # Killed right after the journal says "stopping": the rerun undoes it and performs the upgrade.
    _kill_at(life, life.argv("1.1.0", prefix, port), prefix, "stopping")
    rc, out = life.install("1.1.0", prefix, port)
    assert rc == 0, out["error"]
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["healthy"] and st["previous"].startswith("1.0.0-")
    assert _by_version(life, prefix) == {"1.0.0": ["exited"], "1.1.0": ["running"]} and answers(port, prefix)

    # A rollback killed after it stopped the active version: status reports it; the next rollback starts that
    # version again first (undo), then rolls back.
    _kill_at(life, ["rollback", "--prefix", str(prefix)], prefix, "starting")
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["pending"]["op"] == "rollback", st
    rc, back = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0 and back["data"]["version"] == "1.0.0" and answers(port, prefix), back["error"]

    recovers = [e for e in audit_lines(prefix) if e["action"] == "recover"]
    assert len(recovers) == 3 and all(e["outcome"] == "ok" for e in recovers)
    assert life.cli("uninstall", "--prefix", str(prefix), "--remove-weights")[0] == 0
    assert life.containers(prefix) == [] and not (prefix / "versions").exists()


def test_kubernetes_versions_and_rollback_commands(life: Life) -> None:
    prefix = life.root / "prefix-k8s"
    env = {**life.env, "PATH": str(Path(sys.executable).parent)}  # no kubectl: commands are printed

    def install(version: str, *extra: str) -> dict[str, Any]:
        rc, out = cli(env, "install", str(life.bundles[version]), "--key", str(life.pub), "--prefix", str(prefix),
                      "--target", "kubernetes", "--registry", "reg.internal:5000/ai", "--apply", *extra)
        assert rc == 0, out["error"]
        return dict(out["data"])

    first, second = install("1.0.0", "--weights", "host-path"), install("1.1.0")
    assert (first["weights"], second["weights"]) == ("host-path", "image-volume")
    vid1, vid2 = first["versionId"], second["versionId"]
    assert second["previousVersion"] == "1.0.0" and second["applied"] is False
    assert second["commands"][-1] == f"kubectl apply -f {prefix}/deploy/kubernetes"
    for vid in (vid1, vid2):
        manifests = prefix / "versions" / vid / "deploy/kubernetes"
        assert oct((manifests / "secret-api-key.yaml").stat().st_mode & 0o777) == "0o600"
    # host-path: the node reads this host's copy; image-volume: the model artifact, and no copy here
    assert str(prefix / "versions" / vid1 / "model") in (prefix / "versions" / vid1 / "deploy/kubernetes/"
                                                         "deployment.yaml").read_text()
    assert any((prefix / "versions" / vid1 / "model").iterdir())
    assert "reg.internal:5000/ai/smollm2-clife@sha256:" in (prefix / "versions" / vid2 / "deploy/kubernetes/"
                                                           "deployment.yaml").read_text()
    assert not (prefix / "versions" / vid2 / "model").exists()
    assert (prefix / "deploy").resolve() == (prefix / "versions" / vid2 / "deploy").resolve()
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["target"], record["active"], record["previous"]) == ("kubernetes", vid2, vid1)

    rc, back = cli(env, "rollback", "--prefix", str(prefix))
    assert rc == 0, back["error"]
    data = back["data"]
    assert (data["version"], data["previousVersion"], data["applied"]) == ("1.0.0", "1.1.0", False)
    assert data["commands"] == [f"kubectl apply -f {prefix}/versions/{vid1}/deploy/kubernetes"]
    assert data["alternativeCommands"] == ["kubectl rollout undo deployment/smollm2-clife"]
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["active"], record["previous"]) == (vid1, vid2)
    assert (prefix / "deploy").resolve() == (prefix / "versions" / vid1 / "deploy").resolve()
    rc, forth = cli(env, "rollback", "--prefix", str(prefix))
    assert rc == 0 and forth["data"]["version"] == "1.1.0"
    assert [(e["action"], e["version"]) for e in audit_lines(prefix) if e["action"] != "verify"] == [
        ("install", "1.0.0"), ("upgrade", "1.1.0"), ("rollback", "1.0.0"), ("rollback", "1.1.0")]

    again = install("1.1.0", "--weights", "host-path")  # the same version, now read from this node
    assert again["versionId"] == vid2 and any((prefix / "versions" / vid2 / "model").iterdir())
    assert str(prefix / "versions" / vid2 / "model") in (prefix / "versions" / vid2 / "deploy/kubernetes/"
                                                         "deployment.yaml").read_text()

    # Uninstall needs no Docker engine and, without kubectl, deletes nothing in the cluster: it gives the commands.
    no_docker = {**env, "DOCKER_HOST": f"unix://{life.root}/no-such-docker.sock"}
    rc, one = cli(no_docker, "uninstall", "--prefix", str(prefix), "--version", "1.0.0")
    assert rc == 0, one["error"]
    # every version's manifests name the same Deployment: deleting a kept version's files would stop the active one
    assert one["data"]["commands"] == [] and not (prefix / "versions" / vid1).exists()
    rc, gone = cli(no_docker, "uninstall", "--prefix", str(prefix), "--all", "--remove-weights")
    assert rc == 0, gone["error"]
    assert gone["data"]["commands"] == [f"kubectl delete -f {prefix}/versions/{vid2}/deploy/kubernetes --ignore-not-found"]
    assert gone["data"]["ran"] == [] and not (prefix / "versions").exists()
    assert not (prefix / "airpack-install.json").exists()
    assert [(e["action"], e.get("scope")) for e in audit_lines(prefix)[-2:]] == [("uninstall", "version"),
                                                                                ("uninstall", "all")]


def test_kubernetes_uninstall_runs_kubectl_delete_for_a_version_airpack_applied(life: Life) -> None:
    prefix, bin_dir = life.root / "prefix-k8s-applied", life.root / "fake-kubectl"
    bin_dir.mkdir()
    calls = life.root / "kubectl-calls"
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "kubectl").chmod(0o755)
    env = {**life.env, "PATH": f"{bin_dir}:{Path(sys.executable).parent}",
           "DOCKER_HOST": f"unix://{life.root}/no-such-docker.sock"}
    rc, out = cli(env, "install", str(life.bundles["1.0.0"]), "--key", str(life.pub), "--prefix", str(prefix),
                  "--target", "kubernetes", "--registry", "reg.internal:5000/ai", "--apply")
    assert rc == 0 and out["data"]["applied"] is True, out
    vid = out["data"]["versionId"]
    rc, gone = cli(env, "uninstall", "--prefix", str(prefix))
    assert rc == 0, gone["error"]
    delete = f"kubectl delete -f {prefix}/versions/{vid}/deploy/kubernetes --ignore-not-found"
    assert gone["data"]["ran"] == [delete] and gone["data"]["commands"] == []
    assert calls.read_text().splitlines() == [f"apply -f {prefix}/deploy/kubernetes",
                                              delete.removeprefix("kubectl ")]
    assert not (prefix / "airpack-install.json").exists()


def test_systemd_versions_rollback_uninstall_without_systemd(life: Life) -> None:
    if systemd_running():
        pytest.skip("systemd is PID 1 here: this test checks the host without it (it would switch a unit)")
    prefix, port = life.root / "prefix-systemd", free_port()
    unit = "airpack-smollm2-clife.service"

    def install(version: str) -> dict[str, Any]:
        rc, out = life.cli(*life.argv(version, prefix, port)[:-2], "--target", "systemd")
        assert rc == 0, out["error"]
        assert out["data"]["started"] is False and out["data"]["unit"] == unit
        return dict(out["data"])

    def unit_file(vid: str) -> Path:
        return prefix / "versions" / vid / "deploy/systemd" / unit

    def switch(vid: str) -> list[str]:
        return [f"install -m 0644 {unit_file(vid)} /etc/systemd/system/{unit}", "systemctl daemon-reload",
                f"systemctl enable {unit}", f"systemctl restart {unit}"]

    first = install("1.0.0")
    vid1 = first["versionId"]
    assert first["commands"][-1] == f"systemctl enable --now {unit}"
    second = install("1.1.0")
    vid2 = second["versionId"]
    assert second["previousVersion"] == "1.0.0" and second["commands"] == switch(vid2)  # restart, not enable --now
    assert second["alternativeCommands"][-1] == f"systemctl restart {unit}"
    for vid in (vid1, vid2):  # each version's units mount its own weights
        for file in (unit_file(vid), unit_file(vid).with_suffix(".container")):
            assert f"{prefix}/versions/{vid}/model:/models:ro" in file.read_text()
    assert "--ctx-size 1024" in unit_file(vid2).read_text() or '"1024"' in unit_file(vid2).read_text()
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["target"], record["active"], record["previous"]) == ("systemd", vid2, vid1)
    assert (prefix / "current").resolve() == (prefix / "versions" / vid2).resolve()

    # Without a Docker engine: status, rollback both ways, uninstall of one version and of all.
    no_docker = {**life.env, "DOCKER_HOST": f"unix://{life.root}/no-such-docker.sock"}
    rc, st = cli(no_docker, "status", "--prefix", str(prefix))
    assert rc == 0, st["error"]
    assert st["data"]["target"] == "systemd" and st["data"]["unit"] == unit and st["data"]["healthy"] is False
    assert [(v["version"], v["active"], v["previous"]) for v in st["data"]["versions"]] == [
        ("1.0.0", False, True), ("1.1.0", True, False)]

    rc, back = cli(no_docker, "rollback", "--prefix", str(prefix))
    assert rc == 0, back["error"]
    data = back["data"]
    assert (data["version"], data["previousVersion"], data["started"]) == ("1.0.0", "1.1.0", False)
    assert data["commands"] == switch(vid1)
    assert data["alternativeCommands"][0].endswith(f"/etc/containers/systemd/{Path(unit).stem}.container")
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["active"], record["previous"]) == (vid1, vid2)
    assert (prefix / "model").resolve() == (prefix / "versions" / vid1 / "model").resolve()
    rc, forth = cli(no_docker, "rollback", "--prefix", str(prefix))
    assert rc == 0 and forth["data"]["version"] == "1.1.0" and forth["data"]["commands"] == switch(vid2)

    rc, refused = cli(no_docker, "uninstall", "--prefix", str(prefix), "--version", "1.1.0")
    assert rc == 2 and "active" in refused["error"]
    rc, one = cli(no_docker, "uninstall", "--prefix", str(prefix), "--version", "1.0.0")
    assert rc == 0, one["error"]
    assert one["data"]["commands"] == [] and one["data"]["versionsRemoved"] == [vid1]  # the unit runs 1.1.0
    assert not (prefix / "versions" / vid1).exists() and unit_file(vid2).is_file()
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["active"], record["previous"]) == (vid2, None)

    rc, gone = cli(no_docker, "uninstall", "--prefix", str(prefix), "--all", "--remove-weights")
    assert rc == 0, gone["error"]
    assert gone["data"]["commands"] == [f"systemctl disable --now {unit}", f"rm -f /etc/systemd/system/{unit}",
                                        "systemctl daemon-reload"]
    assert gone["data"]["ran"] == [] and gone["data"]["versionsRemoved"] == [vid2]
    assert not (prefix / "versions").exists() and not (prefix / "airpack-install.json").exists()
    assert not (prefix / "model").exists() and not (prefix / "current").exists()
    assert [(e["action"], e["version"], e.get("scope")) for e in audit_lines(prefix) if e["action"] != "verify"] == [
        ("install", "1.0.0", None), ("upgrade", "1.1.0", None), ("rollback", "1.0.0", None),
        ("rollback", "1.1.0", None), ("uninstall", "1.0.0", "version"), ("uninstall", "1.1.0", "all")]


def test_systemd_upgrade_and_failed_upgrade_where_systemd_runs_with_a_stand_in_systemctl(
        life: Life, monkeypatch: pytest.MonkeyPatch) -> None:
    """PID 1 is not systemd here: ``tr.run`` records the commands and the health check is a stand-in, so what
    is proven is the order of the switch (stop, the new unit file, restart) and the restore on failure (the old
    file back, restarted, checked; exit 4), with real bundles, weights and images."""
    from airpack.errors import HealthError
    from airpack.install import InstallOptions
    from airpack.install import install as install_bundle
    from airpack.install.health import SmokeResult
    from airpack.install.targets import commands as tr
    from airpack.install.targets import systemd as targets_systemd
    from airpack.signing import load_public_key
    from airpack.verify import verify_bundle

    calls: list[str] = []

    def run(argv: list[str], *, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        calls.append(tr.shell_line(argv))
        return subprocess.CompletedProcess(argv, 0, "", "")

    def check(st: Any, say: Any) -> SmokeResult:
        if st.version == "1.2.0":
            raise HealthError("1.2.0 did not become healthy")
        return SmokeResult(True, 200, 0.1, 0.05, 3, 30.0, "red")

    monkeypatch.setenv("DOCKER_HOST", life.env["DOCKER_HOST"])
    monkeypatch.setattr(tr, "systemd_running", lambda: True)
    monkeypatch.setattr(tr, "run", run)
    monkeypatch.setattr(tr, "journal_tail", lambda unit, lines=20: ["invalid argument: --no-such-flag"])
    monkeypatch.setattr(targets_systemd, "check", check)
    prefix, port, unit = life.root / "prefix-systemd-live", free_port(), "airpack-smollm2-clife.service"
    keys = [load_public_key(life.pub)]

    def install(version: str) -> dict[str, Any]:
        calls.clear()
        options = InstallOptions(prefix=prefix, target="systemd", port=port)
        return install_bundle(verify_bundle(life.bundles[version], keys), options, client=life.client).to_dict()

    def file(vid: str) -> Path:
        return prefix / "versions" / vid / "deploy/systemd" / unit

    first = install("1.0.0")
    vid1 = first["versionId"]
    assert first["started"] and first["commands"] == [] and first["smoke"]["ok"]
    assert calls == [tr.shell_line(c) for c in tr.systemd_commands(file(vid1))]
    second = install("1.1.0")
    vid2 = second["versionId"]
    assert calls == [f"systemctl stop {unit}", *(tr.shell_line(c) for c in tr.systemd_switch_commands(file(vid2)))]
    with pytest.raises(HealthError) as exc:
        install("1.2.0")
    assert exc.value.exit_code == 4 and "--no-such-flag" in exc.value.message
    assert "runs the previous version" in exc.value.message
    bad = next(c for c in calls if "1.2.0-" in c).split()[3]  # the failed version's unit file, installed first
    assert calls == [f"systemctl stop {unit}", *(tr.shell_line(c) for c in tr.systemd_switch_commands(Path(bad))),
                     *(tr.shell_line(c) for c in tr.systemd_switch_commands(file(vid2)))]
    record = json.loads((prefix / "airpack-install.json").read_text())
    assert (record["active"], record["previous"], record["pending"]) == (vid2, vid1, None)
    assert not list((prefix / "versions").glob("1.2.0-*"))
    assert [(e["action"], e["version"], e["outcome"]) for e in audit_lines(prefix) if e["action"] != "verify"] == [
        ("install", "1.0.0", "ok"), ("upgrade", "1.1.0", "ok"), ("upgrade", "1.2.0", "failed")]
