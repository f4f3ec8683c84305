"""The install prefix: versions, the downgrade rule, the API key file, the weights copy, the record."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from airpack.bundle_layout import Entry
from airpack.errors import InstallError, VerificationError
from airpack.install import versions
from airpack.install.host import (
    InstallState,
    check_upgrade,
    ensure_api_key,
    publish_weights,
    remove_prefix_files,
    semver_key,
    stage_weights,
)


def test_semver_precedence() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"]
    assert sorted(order, key=semver_key) == order
    assert semver_key("1.0.0+build.5") == semver_key("1.0.0")
    with pytest.raises(InstallError):
        semver_key("v1")


def state(name: str = "demo", version: str = "1.2.0") -> InstallState:
    return InstallState(name=name, version=version, digest="ab" * 32, key_fingerprint="fp", target="docker",
                        endpoint="http://127.0.0.1:8000/v1", container_id="c" * 64, container_name="airpack-demo",
                        image_id="sha256:" + "d" * 64, image_tags=("airpack.local/x:1",), bind="127.0.0.1",
                        port=8000, network="host", api_key_file=None, installed="2026-01-01T00:00:00Z",
                        extra={"future": {"kept": True}})


def test_downgrade_refused_unless_allowed() -> None:
    cur = state()
    check_upgrade(None, "demo", "0.1.0", allow_downgrade=False)
    check_upgrade(cur, "demo", "1.2.0", allow_downgrade=False)  # reinstall
    check_upgrade(cur, "demo", "1.3.0-rc.1", allow_downgrade=False)
    with pytest.raises(InstallError, match="older") as exc:
        check_upgrade(cur, "demo", "1.2.0-rc.1", allow_downgrade=False)
    assert "--allow-downgrade" in str(exc.value) and exc.value.exit_code == 2  # refused for what was asked
    check_upgrade(cur, "demo", "1.1.0", allow_downgrade=True)
    with pytest.raises(InstallError, match="holds demo") as exc:
        check_upgrade(cur, "other", "9.0.0", allow_downgrade=True)
    assert exc.value.exit_code == 2


def test_state_round_trip_keeps_unknown_keys(tmp_path: Path) -> None:
    assert versions.read_version(tmp_path, "1.2.0-x") is None
    versions.write_version(tmp_path, "1.2.0-x", state())
    got = versions.read_version(tmp_path, "1.2.0-x")
    assert got == state() and got is not None and got.extra == {"future": {"kept": True}}
    (versions.version_dir(tmp_path, "1.2.0-x") / versions.VERSION_STATE).write_text("{}")
    with pytest.raises(InstallError, match="unreadable"):
        versions.read_version(tmp_path, "1.2.0-x")


def test_api_key_is_0600_and_kept(tmp_path: Path) -> None:
    path, key = ensure_api_key(tmp_path)
    assert key and len(key) > 40 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again, none = ensure_api_key(tmp_path)
    assert again == path and none is None and path.read_text().strip() == key


def _bundle(tmp_path: Path, data: bytes) -> tuple[Path, Entry]:
    bundle = tmp_path / "bundle"
    (bundle / "model/sub").mkdir(parents=True)
    (bundle / "model/sub/w.bin").write_bytes(data)
    return bundle, Entry("model/sub/w.bin", len(data), hashlib.sha256(data).hexdigest(), "model")


def test_weights_are_copied_not_linked_and_rehashed(tmp_path: Path) -> None:
    bundle, entry = _bundle(tmp_path, b"weights" * 1000)
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    seen: list[int] = []
    stage = stage_weights(bundle, [entry], prefix, seen.append)
    model = publish_weights(stage, prefix)
    copied = model / "sub/w.bin"
    assert copied.read_bytes() == b"weights" * 1000 and sum(seen) == 7000
    assert copied.stat().st_ino != (bundle / entry.path).stat().st_ino and copied.stat().st_nlink == 1
    assert not (prefix / ".model.partial").exists()


def test_a_weight_changed_after_verify_fails_the_copy(tmp_path: Path) -> None:
    bundle, entry = _bundle(tmp_path, b"weights" * 1000)
    (bundle / entry.path).write_bytes(b"Weights" * 1000)  # same size, different bytes
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    with pytest.raises(VerificationError, match="changed since it was verified"):
        stage_weights(bundle, [entry], prefix)
    assert not (prefix / ".model.partial").exists() and not (prefix / "model").exists()


def test_a_weight_swapped_for_a_link_or_fifo_after_verify_fails_the_copy(tmp_path: Path) -> None:
    bundle, entry = _bundle(tmp_path, b"weights" * 1000)
    real = tmp_path / "elsewhere.bin"
    real.write_bytes(b"weights" * 1000)  # the right bytes, but behind a link: still refused
    (bundle / entry.path).unlink()
    (bundle / entry.path).symlink_to(real)
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    with pytest.raises(VerificationError, match="not a regular file any more"):
        stage_weights(bundle, [entry], prefix)
    (bundle / entry.path).unlink()
    os.mkfifo(bundle / entry.path)
    with pytest.raises(VerificationError, match="not a regular file any more"):
        stage_weights(bundle, [entry], prefix)  # and does not block on the FIFO
    assert not (prefix / ".model.partial").exists() and not (prefix / "model").exists()


def test_remove_prefix_files_keeps_weights_unless_asked(tmp_path: Path) -> None:
    versions.write_record(tmp_path, versions.Record("demo"))
    ensure_api_key(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model/w").write_bytes(b"x")
    (tmp_path / "model/w").chmod(0o444)
    assert set(remove_prefix_files(tmp_path, weights=False)) == {"airpack-install.json", "secrets"}
    assert (tmp_path / "model/w").exists()
    assert remove_prefix_files(tmp_path, weights=True) == ["model"]
