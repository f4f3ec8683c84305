"""The lifecycle's files without an engine: the record and its journal, version folders, the ``current``
links, the prefix lock, the audit log, and the CLI's option check."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.errors import InstallError
from airpack.install import audit, host, lifecycle, versions
from airpack.install.host import InstallState
from airpack.install.versions import Pending, Record


def state(version: str = "1.0.0", digest: str = "ab" * 32, **extra: object) -> InstallState:
    return InstallState(name="m", version=version, digest=digest, key_fingerprint="SHA256:k", target="docker",
                        endpoint="http://127.0.0.1:8000/v1", container_id="c" * 64, container_name="airpack-m",
                        image_id="sha256:" + "1" * 64, image_tags=(), bind="127.0.0.1", port=8000, network="host",
                        api_key_file=None, installed="2026-01-01T00:00:00Z", extra=dict(extra))


def add_version(prefix: Path, st: InstallState) -> str:
    vid = versions.version_id(st.version, st.digest)
    (versions.version_dir(prefix, vid) / "model").mkdir(parents=True)
    versions.write_version(prefix, vid, st)
    return vid


def test_record_round_trip_keeps_journal_and_unknown_keys(tmp_path: Path) -> None:
    rec = Record("m", active="1.0.0-x", previous=None,
                 pending=Pending("upgrade", "1.0.0-x", "1.1.0-y", True, "copying", pid=7, started="t"),
                 extra={"future": 1})
    versions.write_record(tmp_path, rec)
    raw = json.loads((tmp_path / host.STATE_FILE).read_text())
    assert raw["stateVersion"] == 2 and raw["pending"]["from"] == "1.0.0-x" and raw["future"] == 1
    back = versions.read_record(tmp_path)
    assert back is not None and back.pending == rec.pending and back.extra == {"future": 1}
    back = versions.set_phase(tmp_path, back, "health")
    assert versions.read_record(tmp_path).pending.phase == "health"  # type: ignore[union-attr]
    assert versions.read_record(tmp_path / "nothing") is None


def test_unreadable_record_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / host.STATE_FILE).write_text("{not json")
    with pytest.raises(InstallError, match="unreadable install record"):
        versions.read_record(tmp_path)


def test_current_link_switches_atomically_and_goes(tmp_path: Path) -> None:
    a, b = add_version(tmp_path, state("1.0.0")), add_version(tmp_path, state("1.1.0", "cd" * 32))
    versions.point_current(tmp_path, a)
    assert (tmp_path / "model").resolve() == (versions.version_dir(tmp_path, a) / "model").resolve()
    versions.point_current(tmp_path, b)
    assert (tmp_path / "current").resolve() == versions.version_dir(tmp_path, b).resolve()
    assert list(versions.installed(tmp_path)) == [a, b]
    versions.point_current(tmp_path, None)
    assert not any((tmp_path / n).is_symlink() for n in ("current", "model", "deploy"))


def test_tidy_and_commit_forget_removed_versions(tmp_path: Path) -> None:
    a, b = add_version(tmp_path, state("1.0.0")), add_version(tmp_path, state("1.1.0", "cd" * 32))
    rec = lifecycle.tidy(tmp_path, Record("m", active=b, previous=a))
    assert (rec.active, rec.previous) == (b, a)
    versions.remove_version_dir(tmp_path, a)
    rec = lifecycle.tidy(tmp_path, rec)
    assert (rec.active, rec.previous) == (b, None)
    lifecycle.commit(tmp_path, rec)
    assert (tmp_path / "current").resolve() == versions.version_dir(tmp_path, b).resolve()
    versions.remove_version_dir(tmp_path, b)
    assert lifecycle.commit(tmp_path, lifecycle.tidy(tmp_path, rec)) is None
    assert not (tmp_path / host.STATE_FILE).exists()


def test_partial_version_folders_are_not_versions(tmp_path: Path) -> None:
    (tmp_path / "versions/.1.2.0-x.partial/model").mkdir(parents=True)
    (tmp_path / "versions/1.3.0-y").mkdir(parents=True)  # no state.json: never completed
    assert versions.installed(tmp_path) == {}
    versions.clean_partials(tmp_path)
    assert not (tmp_path / "versions/.1.2.0-x.partial").exists()


def test_second_lock_on_a_prefix_is_refused_with_the_holder(tmp_path: Path) -> None:
    with versions.locked(tmp_path):
        with (pytest.raises(InstallError, match=f"another airpack command.*pid {os.getpid()}") as exc,
              versions.locked(tmp_path)):
            pass
        assert exc.value.exit_code == 1
    with versions.locked(tmp_path):  # released when the holder is done
        pass


def test_audit_lines_are_appended_with_who_and_what(tmp_path: Path) -> None:
    audit.append(tmp_path, audit.entry("install", name="m", version="1.0.0", digest="d" * 64,
                                       key_fingerprint="SHA256:k"))
    audit.append(tmp_path, audit.entry("upgrade", name="m", version="1.1.0", digest="e" * 64,
                                       key_fingerprint="SHA256:k", outcome="failed", reason="boom", previous=None))
    with (tmp_path / audit.AUDIT_FILE).open("a") as fh:
        fh.write('{"torn": ')  # a crash mid-line loses only that line
    lines = audit.read(tmp_path)
    assert [(e["action"], e["outcome"]) for e in lines] == [("install", "ok"), ("upgrade", "failed")]
    assert lines[1]["reason"] == "boom" and "previous" not in lines[1]
    assert lines[0]["uid"] == os.getuid() and lines[0]["user"] and lines[0]["host"]
    assert set(lines[0]) >= {"time", "action", "name", "version", "digest", "keyFingerprint", "outcome"}


def test_stored_container_spec_round_trips() -> None:
    from airpack.install.engine import ContainerSpec
    from airpack.install.targets.docker import spec_from_dict, spec_to_dict

    spec = ContainerSpec(name="n", image="sha256:1", entrypoint=None, command=("--port", "8000"),
                         environment=(("A", "1"),), network="host", bind="127.0.0.1", port=8000,
                         container_port=8000, mounts=(("/p/model", "/models", True),), gpus=0, shm_gib=None,
                         labels=(("k", "v"),), health_path="/health", health_cmd=None, start_period_s=60)
    stored = json.loads(json.dumps(spec_to_dict(spec)))
    assert spec_from_dict(stored) == spec
    assert replace(spec, name="m") != spec


def test_uninstall_refuses_version_and_all_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["uninstall", "--prefix", str(tmp_path), "--version", "1.0.0", "--all"])
    assert result.exit_code == 2 and "not both" in result.output
