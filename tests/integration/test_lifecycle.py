# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""The install lifecycle of the docker target with real parts: a docker engine, the llama.cpp server image,
three signed SmolLM2 bundles of one name (1.0.0 with context 2048, 1.1.0 with context 1024, and 1.2.0 whose
engine cannot start), all through the CLI as a subprocess.

Proves: upgrade keeps the previous version staged; ``--keep`` prunes the oldest kept version (a fourth bundle,
1.3.0); a tampered bundle offered to an installed prefix is in its audit log (exit 3) and creates no prefix; a failed upgrade exits 4 and the old version answers again;
rollback both ways; uninstall of one version and of all; the audit log; the prefix lock; and SIGKILL of a real
``airpack install`` at each journaled phase followed by ``status`` (which reports it and writes nothing) and a
rerun (which undoes it and completes the switch).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airpack.install.engine import LABEL_PREFIX
from tests import tamper
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
    cli_env,
    ctx_arg,
    smollm2_model,
    status_data,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]
NAME = "smollm2-life"


@dataclass
class Life(Versions):
    def containers(self, prefix: Path) -> list[Any]:
        return self.client.containers.list(all=True, filters={"label": f"{LABEL_PREFIX}={prefix}"})


@pytest.fixture(scope="module")
def life(docker_engine: DockerEngine, upstream_registry: Registry, llama_server_image: BuiltImage,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Life]:
    root = tmp_path_factory.mktemp("life")
    smollm2_model(root)
    env = cli_env(docker_engine.host, root / "cache")
    ref = push_to(docker_engine, llama_server_image.local, upstream_registry)
    bundles, pub = build_versions(root, NAME, ref, env, [("1.0.0", 2048, None), ("1.1.0", 1024, None),
                                                         ("1.2.0", 1024, ["--no-such-flag"]), ("1.3.0", 2048, None)])
    life = Life(root, bundles, pub, env, docker_engine.client)
    try:
        yield life
    finally:
        for c in docker_engine.client.containers.list(all=True, filters={"label": LABEL_PREFIX}):
            if str(root) in c.labels.get(LABEL_PREFIX, ""):
                c.remove(force=True)
        with contextlib.suppress(Exception):
            if ref != llama_server_image.local:
                docker_engine.client.api.remove_image(ref)




def test_upgrade_failed_upgrade_rollback_uninstall(life: Life) -> None:
    prefix, port = life.root / "prefix", free_port()
    rc, first = life.install("1.0.0", prefix, port)
    assert rc == 0, first["error"]
    assert ctx_arg(life, first["data"]["containerId"]) == "2048"
    assert answers(port, prefix)
    installed_at = first["data"]["smoke"]["at"]
    time.sleep(1.1)  # the smoke test's time has whole seconds
    rc, again = life.install("1.0.0", prefix, port)  # the active version again: its smoke test runs now
    assert rc == 0, again["error"]
    assert audit_lines(prefix)[-1]["reason"] == "already active"
    assert again["data"]["smoke"]["ok"] and again["data"]["smoke"]["at"] > installed_at
    st = status_data(life, prefix)
    assert st["smoke"]["at"] == again["data"]["smoke"]["at"]
    assert st["container"]["health"] in ("starting", "healthy")  # Docker's own health state, beside the probe

    rc, up = life.install("1.1.0", prefix, port)
    assert rc == 0, up["error"]
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["healthy"] and st["endpoint"] == f"http://127.0.0.1:{port}/v1"
    assert st["active"].startswith("1.1.0-") and st["previous"].startswith("1.0.0-")
    by_version = {v["version"]: v for v in st["versions"]}
    assert by_version["1.0.0"]["container"]["status"] == "exited"  # kept, stopped: staged for rollback
    assert by_version["1.1.0"]["container"]["status"] == "running"
    assert ctx_arg(life, up["data"]["containerId"]) == "1024"
    assert (prefix / "current").resolve() == (prefix / "versions" / st["active"]).resolve()
    assert (prefix / "model").resolve() == (prefix / "versions" / st["active"] / "model").resolve()
    assert answers(port, prefix)

    rc, bad = life.install("1.2.0", prefix, port)
    assert rc == 4, bad
    assert "--no-such-flag" in bad["error"] and "answering again" in bad["error"]
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["healthy"] and st["pending"] is None
    assert sorted(v["version"] for v in st["versions"]) == ["1.0.0", "1.1.0"]
    assert not any(c.labels.get("io.airpack.version") == "1.2.0" for c in life.containers(prefix))
    assert not list((prefix / "versions").glob("1.2.0-*")) and not list((prefix / "versions").glob(".*"))
    assert answers(port, prefix)

    rc, back = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0, back["error"]
    assert back["data"]["version"] == "1.0.0" and back["data"]["previousVersion"] == "1.1.0"
    assert back["data"]["smoke"]["ok"] and back["data"]["smoke"]["at"] > again["data"]["smoke"]["at"]
    st = status_data(life, prefix)
    assert st["version"] == "1.0.0" and st["healthy"] and st["previous"].startswith("1.1.0-")
    assert answers(port, prefix)
    rc, forth = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0 and forth["data"]["version"] == "1.1.0"
    assert answers(port, prefix)

    rc, refused = life.cli("uninstall", "--prefix", str(prefix), "--version", "1.1.0")
    assert rc == 2 and "active" in refused["error"]  # refused for what was asked: exit 2
    rc, one = life.cli("uninstall", "--prefix", str(prefix), "--version", "1.0.0")
    assert rc == 0, one["error"]
    st = status_data(life, prefix)
    assert [v["version"] for v in st["versions"]] == ["1.1.0"] and st["previous"] is None
    assert len(life.containers(prefix)) == 1 and answers(port, prefix)
    rc, again = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 2 and "no previous version" in again["error"]

    log = audit_lines(prefix)
    actions = [(e["action"], e["version"], e["outcome"]) for e in log]
    assert actions == [
        ("verify", "1.0.0", "ok"), ("install", "1.0.0", "ok"), ("verify", "1.0.0", "ok"), ("install", "1.0.0", "ok"),
        ("verify", "1.1.0", "ok"), ("upgrade", "1.1.0", "ok"), ("verify", "1.2.0", "ok"),
        ("upgrade", "1.2.0", "failed"), ("rollback", "1.0.0", "ok"), ("rollback", "1.1.0", "ok"),
        ("uninstall", "1.0.0", "ok"),
    ]
    for e in log:
        assert e["name"] == NAME and len(e["digest"]) == 64 and e["keyFingerprint"]
        assert e["user"] and e["uid"] == os.getuid() and e["host"] and e["time"].endswith("Z")
    assert "--no-such-flag" in log[7]["reason"] and "answering again" in log[7]["reason"]

    rc, _ = life.cli("uninstall", "--prefix", str(prefix), "--all")
    assert rc == 0 and life.containers(prefix) == []
    assert chat(port, None, timeout=5)[0] is None
    assert audit_lines(prefix)[-1]["action"] == "uninstall"


def test_keep_prunes_the_oldest_version_and_a_tampered_bundle_is_audited(life: Life) -> None:
    prefix, port = life.root / "prefix-keep", free_port()
    assert life.install("1.0.0", prefix, port, "--keep", "2")[0] == 0
    rc, up = life.install("1.1.0", prefix, port, "--keep", "2")
    assert rc == 0 and up["data"]["pruned"] == [], up

    # A bundle whose verification fails: exit 3, a "verify failed" line in the installed prefix's audit log,
    # nothing else changes; offered to a prefix that holds no install, it creates nothing there.
    tampered = life.root / "tampered-1.3.0.bundle"
    subprocess.run(["cp", "-al", str(life.bundles["1.3.0"]), str(tampered)], check=True)  # hardlinks: cheap
    expected = tamper.extra_file(tampered, None)  # type: ignore[arg-type]  # it uses no key
    rc, bad = life.cli("install", str(tampered), "--key", str(life.pub), "--prefix", str(prefix), "--port", str(port))
    assert rc == 3, bad
    last = audit_lines(prefix)[-1]
    assert (last["action"], last["outcome"], last["name"], last["version"]) == ("verify", "failed", NAME, None)
    assert "pytorch_model.bin" in last["reason"] and last["bundle"] == str(tampered)
    assert {path for _, path in expected.problems} <= {p["path"] for p in bad["problems"]}
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["healthy"] and st["pending"] is None
    nowhere = life.root / "prefix-never"
    rc, _ = life.cli("install", str(tampered), "--key", str(life.pub), "--prefix", str(nowhere), "--port", str(port))
    assert rc == 3 and not nowhere.exists()

    # A third version with --keep 2: 1.0.0 (neither active nor previous) goes, container and folder.
    vid1 = next(v["id"] for v in st["versions"] if v["version"] == "1.0.0")
    rc, third = life.install("1.3.0", prefix, port, "--keep", "2")
    assert rc == 0, third["error"]
    assert third["data"]["pruned"] == [vid1]
    st = status_data(life, prefix)
    assert [(v["version"], v["active"], v["previous"]) for v in st["versions"]] == [
        ("1.1.0", False, True), ("1.3.0", True, False)]
    assert sorted(c.labels["io.airpack.version"] for c in life.containers(prefix)) == ["1.1.0", "1.3.0"]
    assert not (prefix / "versions" / vid1).exists() and answers(port, prefix)
    log = [(e["action"], e["version"], e["outcome"], e.get("scope")) for e in audit_lines(prefix)]
    assert log[-3:] == [("verify", "1.3.0", "ok", None), ("upgrade", "1.3.0", "ok", None),
                        ("uninstall", "1.0.0", "ok", "prune")]
    assert ("verify", None, "failed", None) in log
    assert life.cli("uninstall", "--prefix", str(prefix), "--remove-weights")[0] == 0
    assert life.containers(prefix) == []


def test_second_install_on_one_prefix_is_refused(life: Life) -> None:
    prefix, port = life.root / "prefix-lock", free_port()
    first = life.popen_install("1.0.0", prefix, port)
    try:
        _wait_for(lambda: _audit_has(prefix, "verify"), 120, first)
        rc, second = life.install("1.1.0", prefix, port)
        assert rc == 1, second
        assert "another airpack command is changing this prefix" in second["error"]
        assert f"pid {first.pid}" in second["error"]
        _, errs = first.communicate(timeout=300)
        assert first.returncode == 0, errs
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
        first.wait()
    assert answers(port, prefix)
    assert life.cli("uninstall", "--prefix", str(prefix), "--remove-weights")[0] == 0
    assert life.containers(prefix) == []


def _audit_has(prefix: Path, action: str) -> bool:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return any(e["action"] == action for e in audit_lines(prefix))
    return False


def _phase(prefix: Path) -> str | None:
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
        pending = json.loads((prefix / "airpack-install.json").read_text())["pending"]
        return str(pending["phase"]) if pending else None
    return None


def _wait_for(check: Any, timeout: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"airpack exited {proc.returncode} first: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.002)
    raise AssertionError("timed out")


# Where a switch is killed, and whether the old version still answers right after the kill (until the switch
# stops the old container it never stopped; later, what answers is not asserted until a rerun).
PHASES = [("verify", True), ("copying", True), ("loading", True), ("stopping", None), ("health", None)]


def test_sigkill_at_each_phase_then_status_or_rerun(life: Life) -> None:
    prefix, port = life.root / "prefix-kill", free_port()
    assert life.install("1.0.0", prefix, port)[0] == 0
    for i, (phase, old_answers) in enumerate(PHASES):
        old, new = ("1.0.0", "1.1.0") if i % 2 == 0 else ("1.1.0", "1.0.0")  # upgrade, then downgrade back
        extra = ("--allow-downgrade",) if new < old else ()
        verifies = sum(e["action"] == "verify" for e in audit_lines(prefix))
        proc = life.popen_install(new, prefix, port, *extra)
        try:
            if phase == "verify":
                _wait_for(lambda n=verifies: sum(e["action"] == "verify" for e in audit_lines(prefix)) > n, 120, proc)
            else:
                _wait_for(lambda p=phase: _phase(prefix) == p, 120, proc)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        if old_answers is not None:
            assert answers(port, prefix) is old_answers, phase
        if i % 2 == 0:  # status reports what the kill left (the unfinished switch) and writes nothing
            record = (prefix / "airpack-install.json").read_bytes()
            st = status_data(life, prefix)
            assert st["version"] == old and (st["pending"] is None) == (phase == "verify"), (phase, st)
            assert (prefix / "airpack-install.json").read_bytes() == record, phase
        rc, out = life.cli("install", str(life.bundles[new]), "--key", str(life.pub), "--prefix", str(prefix),
                           "--port", str(port), *extra)  # the rerun completes the switch
        assert rc == 0, (phase, out["error"])
        st = status_data(life, prefix)
        assert st["version"] == new and st["healthy"] and st["previous"].startswith(f"{old}-"), phase
        assert sorted(v["version"] for v in st["versions"]) == ["1.0.0", "1.1.0"], phase
        assert answers(port, prefix), phase
        running = [c for c in life.containers(prefix) if c.status == "running"]
        assert len(running) == 1 and len(life.containers(prefix)) == 2, phase
    rc, again = life.install("1.1.0", prefix, port)  # a rerun of a completed install changes nothing
    assert rc == 0 and again["data"]["containerId"] == st["containerId"]

    # A rollback killed after it stopped the active version: status reports it; the next rollback starts that
    # version again first (undo), then rolls back.
    proc = subprocess.Popen([sys.executable, "-m", "airpack", "rollback", "--prefix", str(prefix), "--json"],
                            env=life.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _phase(prefix) == "starting", 120, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["pending"]["op"] == "rollback", st
    rc, back = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0 and back["data"]["version"] == "1.0.0" and answers(port, prefix)

    recovers = [e for e in audit_lines(prefix) if e["action"] == "recover"]
    assert len(recovers) >= len(PHASES) and all(e["outcome"] == "ok" for e in recovers)  # not "verify"
    assert life.cli("uninstall", "--prefix", str(prefix), "--remove-weights")[0] == 0
    assert life.containers(prefix) == [] and not (prefix / "versions").exists()
