"""The systemd target's lifecycle where systemd *is* PID 1, which this machine cannot show for real: ``tr.run``
records the commands instead of running them, ``systemd_running`` says yes, and the health + smoke check is a
stand-in that passes or fails per version. Also: ``--keep`` pruning and a failed verification in the audit log.
No engine, no sockets.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from airpack.errors import HealthError, InstallError
from airpack.install import audit, host, lifecycle, versions
from airpack.install.health import SmokeResult
from airpack.install.remove import prune, uninstall
from airpack.install.targets import commands as tr
from airpack.install.targets import systemd as targets_systemd

UNIT = "airpack-m.service"
V1, V2 = "1.0.0-aaaaaaaaaaaa", "1.1.0-bbbbbbbbbbbb"


def _state(prefix: Path, vid: str, target: str = "systemd") -> host.InstallState:
    version = vid.split("-")[0]
    return host.InstallState(
        name="m", version=version, digest=vid[-12:] * 5 + "abcd", key_fingerprint="SHA256:x", target=target,
        endpoint="http://127.0.0.1:8000/v1", container_id="airpack-m", container_name="airpack-m",
        image_id="sha256:i", image_tags=(), bind="127.0.0.1", port=8000, network="host", api_key_file=None,
        installed=f"2026-11-22T20:00:0{version[2]}Z", health_url="http://127.0.0.1:8000/health",
        extra={"unit": UNIT, "versionId": vid, "started": True})


def _version(prefix: Path, vid: str, target: str = "systemd") -> None:
    folder = versions.version_dir(prefix, vid)
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "w.gguf").write_bytes(b"w")
    if target == "systemd":
        (folder / "deploy/systemd").mkdir(parents=True)
        (folder / "deploy/systemd" / UNIT).write_text(f"--volume {folder}/model:/models:ro\n")
    versions.write_version(prefix, vid, _state(prefix, vid, target))


def _prefix(tmp_path: Path, **record: Any) -> Path:
    prefix = tmp_path / "p"
    for vid in (V1, V2):
        _version(prefix, vid)
    rec = versions.Record("m", active=record.get("active", V2), previous=record.get("previous", V1),
                          pending=record.get("pending"), extra={"target": "systemd", "unit": UNIT})
    lifecycle.commit(prefix, rec)
    return prefix


class _Systemd:
    """systemd as PID 1, seen through ``tr.run``; ``broken`` versions fail their health check."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, broken: Sequence[str] = ()) -> None:
        self.calls: list[str] = []
        self.broken = set(broken)
        monkeypatch.setattr(tr, "systemd_running", lambda: True)
        monkeypatch.setattr(tr, "run", self.run)
        monkeypatch.setattr(tr, "journal_tail", lambda unit, lines=20: [f"{unit}: the engine said no"])
        monkeypatch.setattr(targets_systemd, "check", self.check)

    def run(self, argv: Sequence[str], *, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        self.calls.append(tr.shell_line(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    def check(self, st: host.InstallState, say: Any) -> SmokeResult:
        if st.version in self.broken:
            raise HealthError(f"{st.version} did not become healthy")
        return SmokeResult(True, 200, 0.1, 0.05, 3, 30.0, "red")


def _switch(prefix: Path, vid: str) -> list[str]:
    return [tr.shell_line(c) for c in tr.systemd_switch_commands(targets_systemd.unit_file(prefix, vid, UNIT))]


def _record(prefix: Path) -> dict[str, Any]:
    return dict(json.loads((prefix / host.STATE_FILE).read_text()))


def test_rollback_with_systemd_switches_the_unit_file_and_checks_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _prefix(tmp_path)
    sd = _Systemd(monkeypatch)
    out = lifecycle.rollback(prefix).to_dict()
    assert (out["version"], out["previousVersion"], out["started"], out["commands"]) == ("1.0.0", "1.1.0", True, [])
    assert sd.calls == [f"systemctl stop {UNIT}", *_switch(prefix, V1)]
    assert (_record(prefix)["active"], _record(prefix)["previous"], _record(prefix)["pending"]) == (V1, V2, None)
    assert (prefix / "model").resolve() == (versions.version_dir(prefix, V1) / "model").resolve()
    assert audit.read(prefix)[-1]["action"] == "rollback" and audit.read(prefix)[-1]["outcome"] == "ok"


def test_failed_rollback_puts_the_old_unit_file_back_and_exits_4(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _prefix(tmp_path)
    sd = _Systemd(monkeypatch, broken=["1.0.0"])
    with pytest.raises(HealthError) as exc:
        lifecycle.rollback(prefix)
    assert exc.value.exit_code == 4
    assert "1.0.0 did not become healthy" in exc.value.message and "the engine said no" in exc.value.message
    assert "1.1.0 is answering again" in exc.value.message
    assert sd.calls == [f"systemctl stop {UNIT}", *_switch(prefix, V1), f"systemctl stop {UNIT}", *_switch(prefix, V2)]
    assert (_record(prefix)["active"], _record(prefix)["previous"], _record(prefix)["pending"]) == (V2, V1, None)
    assert (prefix / "current").resolve() == versions.version_dir(prefix, V2).resolve()
    last = audit.read(prefix)[-1]
    assert (last["action"], last["outcome"]) == ("rollback", "failed")


def test_undo_of_a_killed_upgrade_restores_the_old_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pending = versions.Pending("upgrade", V1, V2, True, "health")
    prefix = _prefix(tmp_path, active=V1, previous=None, pending=pending)
    sd = _Systemd(monkeypatch)
    record = versions.read_record(prefix)
    assert record is not None
    restored = lifecycle.undo(None, prefix, record, lambda _: None)
    assert restored is not None and (restored.active, restored.pending) == (V1, None)
    assert not versions.version_dir(prefix, V2).exists()
    assert sd.calls == _switch(prefix, V1)
    entry = audit.read(prefix)[-1]
    assert (entry["action"], entry["outcome"]) == ("recover", "ok")


def test_undo_of_a_killed_first_install_disables_the_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "p"
    _version(prefix, V1)
    rec = versions.Record("m", pending=versions.Pending("install", None, V1, True, "health"),
                          extra={"target": "systemd", "unit": UNIT})
    versions.write_record(prefix, rec)
    sd = _Systemd(monkeypatch)
    assert lifecycle.undo(None, prefix, rec, lambda _: None) is None
    assert sd.calls == [tr.shell_line(c) for c in tr.systemd_remove_commands(UNIT)]
    assert not (prefix / host.STATE_FILE).exists() and not versions.version_dir(prefix, V1).exists()


def test_uninstall_runs_the_unit_commands_only_where_systemd_runs(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _prefix(tmp_path)
    monkeypatch.setattr(tr, "systemd_running", lambda: False)
    one = uninstall(prefix, version="1.0.0").to_dict()
    assert one["commands"] == [] and one["versionsRemoved"] == [V1]  # the unit runs the active version
    with pytest.raises(InstallError, match="active version"):
        uninstall(prefix, version="1.1.0")
    sd = _Systemd(monkeypatch)
    gone = uninstall(prefix, remove_weights=True).to_dict()
    remove = [tr.shell_line(c) for c in tr.systemd_remove_commands(UNIT)]
    assert sd.calls == remove and gone["ran"] == remove and gone["commands"] == []
    assert not (prefix / "versions").exists() and not (prefix / host.STATE_FILE).exists()


def test_keep_prunes_the_oldest_versions_that_are_neither_active_nor_previous(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    vids = ["1.0.0-aaaaaaaaaaaa", "1.1.0-bbbbbbbbbbbb", "1.2.0-cccccccccccc", "1.3.0-dddddddddddd"]
    for vid in vids:
        _version(prefix, vid, target="kubernetes")
    lifecycle.commit(prefix, versions.Record("m", active=vids[1], previous=vids[3], extra={"target": "kubernetes"}))
    assert prune(prefix, None, None) == []
    assert prune(prefix, 2, None) == [vids[0], vids[2]]
    assert list(versions.installed(prefix)) == [vids[1], vids[3]]
    assert [(e["action"], e["version"], e["scope"]) for e in audit.read(prefix)] == [
        ("uninstall", "1.0.0", "prune"), ("uninstall", "1.2.0", "prune")]
    assert prune(prefix, 1, None) == []  # the active and the previous version always stay


def test_a_failed_verification_is_audited_only_where_an_install_is(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "SHA256SUMS").write_bytes(b"x")
    assert not audit.failed_verification(tmp_path / "nothing", bundle, "bad")
    assert not (tmp_path / "nothing").exists()
    prefix = _prefix(tmp_path)
    assert audit.failed_verification(prefix, bundle, "1 problem: extra model/x", "ab" * 32)
    line = audit.read(prefix)[-1]
    assert (line["action"], line["outcome"], line["name"], line["version"]) == ("verify", "failed", "m", None)
    assert line["reason"] == "1 problem: extra model/x" and line["bundle"] == str(bundle)
    assert len(line["digest"]) == 64
    with versions.locked(prefix):  # another command holds the prefix: the line is still written
        assert audit.failed_verification(prefix, bundle, "again")
    assert audit.read(prefix)[-1]["reason"] == "again" and os.getpid() == line["pid"]


def test_uninstall_goes_on_when_the_unit_was_never_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = _prefix(tmp_path)
    sd = _Systemd(monkeypatch)

    def run(argv: Sequence[str], *, timeout: float = 0) -> subprocess.CompletedProcess[str]:
        sd.calls.append(tr.shell_line(argv))
        if argv[1] == "disable":
            raise InstallError(f"'{tr.shell_line(argv)}' exited with 1")
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    monkeypatch.setattr(tr, "run", run)
    gone = uninstall(prefix).to_dict()
    assert len(sd.calls) == 3 and gone["commandErrors"] == [f"'systemctl disable --now {UNIT}' exited with 1"]
    assert not (prefix / host.STATE_FILE).exists() and audit.read(prefix)[-1]["scope"] == "all"
