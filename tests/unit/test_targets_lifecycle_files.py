"""The compose target's lifecycle parts that need no engine: project names per version, the record's
``target``/``composeProject`` kept across commits, and undoing a killed compose switch (a fake client)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airpack.install import audit, host, lifecycle, versions
from airpack.install.targets import compose as targets_compose
from airpack.install.targets.commands import compose_project


class _Containers:
    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Any]:
        self.filters.append(filters or {})
        return []


class _Client:
    def __init__(self) -> None:
        self.containers = _Containers()


def _state(vid: str, version: str, project: str) -> host.InstallState:
    return host.InstallState(
        name="m", version=version, digest="d" * 64, key_fingerprint="SHA256:x", target="compose",
        endpoint="http://127.0.0.1:8000/v1", container_id="c" + version, container_name=project, image_id="sha256:i",
        image_tags=(), bind="127.0.0.1", port=8000, network="host", api_key_file=None, installed="t",
        extra={"composeProject": project, "versionId": vid, "composeCommand": ["docker-compose"]})


def test_project_names_differ_per_version_and_are_compose_safe(tmp_path: Path) -> None:
    base = compose_project("m", tmp_path)
    a, b = targets_compose.project_name(base, "1.0.0-abc"), targets_compose.project_name(base, "1.1.0-RC.1-abc")
    assert a == f"{base}-1-0-0-abc" and b == f"{base}-1-1-0-rc-1-abc" and a != b
    assert all(ch.islower() or ch.isdigit() or ch == "-" for ch in a + b)
    assert targets_compose.compose_file(tmp_path, "1.0.0-abc") == tmp_path / "versions/1.0.0-abc/deploy/compose.yaml"


def test_commit_keeps_the_target_and_names_the_active_project(tmp_path: Path) -> None:
    for vid, version in (("1.0.0-a", "1.0.0"), ("1.1.0-b", "1.1.0")):
        versions.version_dir(tmp_path, vid).mkdir(parents=True)
        versions.write_version(tmp_path, vid, _state(vid, version, f"p-{version}"))
    rec = versions.Record("m", active="1.1.0-b", previous="1.0.0-a", extra={"target": "compose"})
    lifecycle.commit(tmp_path, rec)
    data = json.loads((tmp_path / host.STATE_FILE).read_text())
    assert data["target"] == "compose" and data["composeProject"] == "p-1.1.0"
    back = versions.read_record(tmp_path)
    assert back is not None
    lifecycle.commit(tmp_path, versions.Record("m", active=back.previous, previous=back.active, extra=back.extra))
    data = json.loads((tmp_path / host.STATE_FILE).read_text())
    assert data["composeProject"] == "p-1.0.0" and data["active"] == "1.0.0-a"
    assert (tmp_path / "current").resolve() == versions.version_dir(tmp_path, "1.0.0-a").resolve()


def test_undo_of_a_killed_first_compose_install_removes_its_project_and_folder(tmp_path: Path) -> None:
    vid = "1.0.0-abc"
    (versions.version_dir(tmp_path, vid) / "model").mkdir(parents=True)
    (tmp_path / "versions" / ".x.partial").mkdir()
    base = compose_project("m", tmp_path)
    rec = versions.Record("m", pending=versions.Pending("install", None, vid, True, "health"),
                          extra={"target": "compose", "composeBase": base})
    versions.write_record(tmp_path, rec)
    client = _Client()
    assert lifecycle.undo(client, tmp_path, rec, lambda _: None) is None
    label = f"com.docker.compose.project={targets_compose.project_name(base, vid)}"
    assert client.containers.filters == [{"label": label}]  # what the project left is looked for and removed
    assert not (tmp_path / host.STATE_FILE).exists() and not (tmp_path / "versions" / vid).exists()
    assert not (tmp_path / "versions" / ".x.partial").exists()
    entry = audit.read(tmp_path)[-1]
    assert entry["action"] == "recover" and entry["outcome"] == "ok" and "install to 1.0.0-abc" in entry["reason"]
