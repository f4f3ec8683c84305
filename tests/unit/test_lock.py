"""The lock: what a local model folder resolves to, what it refuses, and how build holds the lock to it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.errors import LockError
from airpack.lock import Lock, read_lock


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRPACK_CACHE", str(tmp_path / "cache"))


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def lock_json(spec: Path) -> dict:
    code, out, err = cli("lock", str(spec), "--json")
    assert code == 0, out + err
    return json.loads((spec.parent / "airpack.lock").read_text())


def test_lock_records_size_and_sha256_of_every_file(small_model: Path, write_spec) -> None:
    lock = lock_json(write_spec(small_model))
    files = {f["path"]: f for f in lock["model"]["files"]}
    assert sorted(files) == ["config.json", "model.safetensors", "tokenizer.json"]
    for rel, f in files.items():
        data = (small_model / rel).read_bytes()
        assert (f["size"], f["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert lock["model"]["source"] == "local" and lock["lockVersion"] == 1
    assert lock["specDigest"].startswith("sha256:")


def test_pickle_and_code_recorded_as_excluded_then_opted_in(small_model: Path, write_spec) -> None:
    (small_model / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    (small_model / "old.pth").write_bytes(b"\x80\x04pickle")
    (small_model / "modeling_x.py").write_text("import os\n")
    spec = write_spec(small_model)
    code, out, _ = cli("lock", str(spec), "--json")
    assert code == 0
    excluded = {e["path"]: e["reason"] for e in json.loads(out)["data"]["excluded"]}
    lock = lock_json(spec)
    assert {e["path"]: e["reason"] for e in lock["model"]["excluded"]} == excluded
    assert "allowPickle" in excluded["pytorch_model.bin"] and "allowPickle" in excluded["old.pth"]
    assert "allowCode" in excluded["modeling_x.py"]
    assert not {"pytorch_model.bin", "old.pth", "modeling_x.py"} & {f["path"] for f in lock["model"]["files"]}

    # The human output says what was left out and why.
    code, out, _ = cli("lock", str(spec))
    assert code == 0 and "left out pytorch_model.bin: pickle" in out

    lock = lock_json(write_spec(small_model, model={"allowPickle": True, "allowCode": True}))
    assert {"pytorch_model.bin", "old.pth", "modeling_x.py"} <= {f["path"] for f in lock["model"]["files"]}
    assert lock["model"]["excluded"] == []


def test_include_and_exclude_globs(small_model: Path, write_spec) -> None:
    (small_model / "onnx").mkdir()
    (small_model / "onnx" / "model.onnx").write_bytes(b"onnx")
    lock = lock_json(write_spec(small_model, model={"files": ["*.json", "*.onnx"], "exclude": ["tokenizer.*"]}))
    assert [f["path"] for f in lock["model"]["files"]] == ["config.json", "onnx/model.onnx"]
    assert {e["path"]: e["reason"] for e in lock["model"]["excluded"]} == {
        "model.safetensors": "not matched by model.files", "tokenizer.json": "matched by model.exclude"}


def test_nothing_selected_is_an_error(small_model: Path, write_spec) -> None:
    code, _, err = cli("lock", str(write_spec(small_model, model={"files": ["*.gguf"]})))
    assert code == 2 and "model.path: no files selected" in err


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_symlink_in_the_model_folder_is_refused(small_model: Path, write_spec, tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text("{}")
    if kind == "file":
        (small_model / "linked.json").symlink_to(outside / "secret.json")
    else:
        (small_model / "linked").symlink_to(outside, target_is_directory=True)
    spec = write_spec(small_model)
    code, _, err = cli("lock", str(spec))
    assert code == 2 and "symbolic links are not followed" in err and "linked" in err
    assert not (spec.parent / "airpack.lock").exists()


@pytest.mark.parametrize("name", ["my model.safetensors", "weights$1.json", "back\\slash.json", "-dash.json",
                                  "caf\u00e9.json", "new\nline.json"])
def test_non_portable_names_are_refused(small_model: Path, write_spec, name: str) -> None:
    (small_model / name).write_text("{}")
    code, _, err = cli("lock", str(write_spec(small_model)))
    assert code == 2 and "non-portable name" in err and "rename the file or exclude it" in err


def test_non_portable_name_can_be_excluded(small_model: Path, write_spec) -> None:
    (small_model / "my notes.txt").write_text("x")
    lock = lock_json(write_spec(small_model, model={"exclude": ["my notes.txt"]}))
    assert "my notes.txt" not in {f["path"] for f in lock["model"]["files"]}


def test_case_fold_collisions_are_refused(small_model: Path, write_spec) -> None:
    (small_model / "Config.json").write_text("{}")
    code, _, err = cli("lock", str(write_spec(small_model)))
    assert code == 2 and "'Config.json' and 'config.json' differ only in case" in err


def test_lock_round_trips(small_model: Path, write_spec) -> None:
    spec = write_spec(small_model)
    lock_json(spec)
    lock = read_lock(spec.parent / "airpack.lock")
    assert Lock.from_dict(json.loads(lock.to_json())) == lock
    assert lock.to_json() == (spec.parent / "airpack.lock").read_bytes()


LOCK_WITH_PATH = (b'{"lockVersion": 1, "specDigest": "x", "model": {"source": "local", "files": '
                  b'[{"path": "%s", "size": 1, "sha256": "00"}]}}')


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "malformed lock"),
    (b'{"lockVersion": 2}', "lock format version 2 is not supported"),
    (b'{"lockVersion": 1, "specDigest": "x"}', "malformed lock"),
    (LOCK_WITH_PATH % b"../etc/passwd", "'..' or '.' component"),
    (LOCK_WITH_PATH % b"/etc/passwd", "absolute path"),
])
def test_bad_lock_files(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "airpack.lock").write_bytes(content)
    with pytest.raises(LockError, match=message) as info:
        read_lock(tmp_path / "airpack.lock")
    assert info.value.exit_code == 2


def test_build_refuses_a_lock_from_an_edited_spec(small_model: Path, write_spec, tmp_path: Path) -> None:
    spec = write_spec(small_model)
    lock_json(spec)
    spec.write_text(spec.read_text().replace("version: 1.0.0", "version: 1.0.1"))
    code, _, err = cli("build", str(spec), "--out", str(tmp_path / "bundle"))
    assert code == 2
    assert "the lock no longer matches the spec" in err and "run 'airpack lock' again" in err
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("change", ["same-size", "grown", "deleted"])
def test_model_changed_after_lock_fails_the_build_and_leaves_nothing(small_model: Path, write_spec,
                                                                     tmp_path: Path, change: str) -> None:
    spec = write_spec(small_model)
    lock_json(spec)
    target = small_model / "model.safetensors"
    if change == "same-size":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif change == "grown":
        with target.open("ab") as fh:
            fh.write(b"\0")
    else:
        target.unlink()
    out = tmp_path / "bundle"
    code, stdout, _ = cli("build", str(spec), "--out", str(out), "--json")
    assert code != 0
    message = json.loads(stdout)["error"]
    assert "model.safetensors" in message
    assert ("content differs from the lock" in message) if change != "deleted" else ("no longer exists" in message)
    assert "run 'airpack lock' again" in message
    assert not out.exists()
    assert not any(p.name == "bundle" for p in tmp_path.iterdir())


def test_build_without_a_lock_writes_one(small_model: Path, write_spec, tmp_path: Path) -> None:
    spec = write_spec(small_model)
    code, out, err = cli("build", str(spec), "--out", str(tmp_path / "bundle"))
    assert code == 0, out + err
    assert read_lock(spec.parent / "airpack.lock").model.total_size == sum(
        p.stat().st_size for p in small_model.iterdir())
