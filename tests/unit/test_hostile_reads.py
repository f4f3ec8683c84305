"""Hostile bundles (issue 14, items 2-6): escape sequences in names and manifest fields, FIFOs and ``/dev/zero``
links and sparse terabyte files in place of the files airpack reads, and folders nested deeper than Python's
recursion limit. Each case ends in seconds (hard timeouts), with one clear line, its documented exit code, no
traceback, and the bundle and the prefix left as they were."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack._fs import FileTooLarge, NotRegularFile, read_capped, walk_tree
from airpack.bundle_layout import Entry
from airpack.cli import app
from airpack.describe import unverified_manifest
from airpack.errors import KeyFileError, LockError, UsageError, VerificationError
from airpack.install import audit, host
from airpack.install.deploy_files import read_signed
from airpack.install.doctor import Check
from airpack.install.facts import bundle_needs
from airpack.lock import list_local_files, read_lock
from airpack.oci.archive import _stream_blob
from airpack.oci.layout import OciLayout
from airpack.signing import load_private_key, load_public_key
from airpack.textsafe import escape, escape_tree
from airpack.verify import Problem, check_integrity, verify_bundle
from airpack.volumes import split_bundle

CHUNK = 256 * 1024
TB = 1 << 40
SPOOF = "x\x1b[2K\r\x1b[32mOK all files verified\x1b[0m\x9b\u202e\u200b"


def cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def _no_controls(text: str) -> None:
    assert not any(not c.isprintable() and c != "\n" for c in text), repr(text)


@pytest.fixture(scope="module")
def pristine(built_bundle, make_model, keys) -> Path:
    return built_bundle(make_model(), key=keys.ecdsa, chunk_size=CHUNK)


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(pristine, dst, symlinks=True)
    return dst


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {rel: (mode, (folder / rel).lstat().st_size) for rel, mode in walk_tree(folder)}


def _hostile(path: Path, kind: str) -> None:
    """Put a FIFO, a link to /dev/zero or a sparse terabyte file where ``path`` was."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b"")
        os.truncate(path, TB)


# ------------------------------------------------------------------------------------------- 2: escaping


def test_escape_makes_every_control_visible_and_is_idempotent() -> None:
    out = escape(SPOOF)
    assert out == "x\\x1b[2K\\x0d\\x1b[32mOK all files verified\\x1b[0m\\x9b\\u202e\\u200b"
    assert escape(out) == out and escape("plain text, café") == "plain text, café"
    assert escape_tree({"k\x07": ["\x1b", ("\x00",)], "n": 1}) == {"k\\x07": ["\\x1b", ["\\x00"]], "n": 1}
    assert str(UsageError(f"bad {SPOOF}", hint="\x1b]0;title\x07")).isprintable()
    assert Problem("extra", SPOOF, SPOOF).path == escape(SPOOF)
    assert Check("arch", "fail", SPOOF, SPOOF).to_dict() == {"name": "arch", "status": "fail",
                                                             "detail": escape(SPOOF), "fix": escape(SPOOF)}


@pytest.mark.timeout(60)
def test_a_spoofing_file_name_is_escaped_in_text_and_json(bundle: Path, keys) -> None:
    (bundle / "model" / SPOOF).write_bytes(b"x")
    code, out, err = cli("verify", bundle, "--key", keys.ecdsa.pub)
    assert code == 3 and "\\x1b[32mOK all files verified" in err
    _no_controls(err)
    code, out, _ = cli("verify", bundle, "--key", keys.ecdsa.pub, "--json")
    doc = json.loads(out)
    assert code == 3 and [p["path"] for p in doc["problems"]] == [f"model/{escape(SPOOF)}"]
    assert "\x1b" not in json.dumps(doc, ensure_ascii=False)


@pytest.mark.timeout(60)
def test_inspect_escapes_unverified_manifest_fields(bundle: Path) -> None:
    doc = json.loads((bundle / "airpack.json").read_text())
    doc["name"], doc["lock"]["model"]["files"][0]["path"] = SPOOF, SPOOF
    (bundle / "airpack.json").write_text(json.dumps(doc))
    code, out, err = cli("inspect", bundle)  # the description on stdout, as every command's result
    assert code == 0 and escape(SPOOF) in out
    _no_controls(out + err)
    code, out, _ = cli("inspect", bundle, "--json")
    data = json.loads(out)["data"]
    assert code == 0 and data["name"] == escape(SPOOF) and data["deployDiff"] == {}  # nothing unsigned rendered
    assert data["model"]["files"][0]["path"] == escape(SPOOF)
    # inspect renders no template it has not checked: the diff needs a key
    code, _, err = cli("inspect", bundle, "--show-diff")
    assert code == 2 and "--key" in err


# ---------------------------------------------------------------------- 3: one capped, no-follow reader


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_read_capped_refuses_what_is_not_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "f"
    _hostile(path, kind)
    with pytest.raises(FileTooLarge if kind == "sparse" else NotRegularFile):
        read_capped(path, 1 << 20)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
@pytest.mark.parametrize("command", ["inspect", "doctor"])
def test_inspect_and_doctor_do_not_block_on_a_hostile_manifest(bundle: Path, kind: str, command: str) -> None:
    _hostile(bundle / "airpack.json", kind)
    before = _snapshot(bundle)
    code, _, err = cli(command, bundle)
    assert code == 2 and "airpack.json" in err and len(err.strip().splitlines()) == 1, err
    assert _snapshot(bundle) == before


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_hostile_key_file_is_refused(tmp_path: Path, bundle: Path, kind: str) -> None:
    key = tmp_path / "k.pem"
    _hostile(key, kind)
    with pytest.raises(KeyFileError):
        load_public_key(key)
    with pytest.raises(KeyFileError):
        load_private_key(key)
    code, _, err = cli("verify", bundle, "--key", key)
    assert code == 2 and str(key) in err


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_hostile_oci_index_and_deploy_file(tmp_path: Path, kind: str) -> None:
    (tmp_path / "images").mkdir()
    _hostile(tmp_path / "images" / "index.json", kind)
    with pytest.raises(VerificationError, match=r"index\.json"):
        OciLayout(tmp_path / "images").read_index()
    layout, digest = OciLayout(tmp_path / "images"), "sha256:" + "ab" * 32
    layout.blob_path(digest).parent.mkdir(parents=True)
    _hostile(layout.blob_path(digest), kind)
    with pytest.raises(VerificationError, match="blob"):  # as docker load and push stream it
        b"".join(_stream_blob(layout, digest, 10, None))
    with pytest.raises(VerificationError):
        layout.read_blob(digest)
    (tmp_path / "deploy").mkdir()
    _hostile(tmp_path / "deploy" / "compose.yaml", kind)
    entry = Entry("deploy/compose.yaml", 10, "0" * 64, "deploy")
    with pytest.raises(VerificationError, match="changed since it was verified"):
        read_signed(tmp_path, entry)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_doctor_reads_the_runtime_image_config_capped(bundle: Path, kind: str) -> None:
    manifest = unverified_manifest(bundle)
    hexd = "cd" * 32
    manifest = dataclasses.replace(manifest, spec={**manifest.spec, "target": {"gpus": 1}},
                                   images=({"role": "runtime", "configDigest": f"sha256:{hexd}"},))
    (bundle / "images" / "blobs" / "sha256").mkdir(parents=True)
    _hostile(bundle / "images" / "blobs" / "sha256" / hexd, kind)
    assert bundle_needs(manifest, bundle).cuda is None  # unreadable: no CUDA claim, and no hang


@pytest.mark.timeout(30)
def test_the_failed_verification_audit_line_does_not_read_the_bundle_again(tmp_path: Path, bundle: Path,
                                                                            keys) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / host.STATE_FILE).write_text(json.dumps({"name": "m"}))
    sums = (bundle / "SHA256SUMS").read_bytes()
    (bundle / "model" / "stray").write_bytes(b"x")
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    assert info.value.sums_sha256 == hashlib.sha256(sums).hexdigest()  # what verification read
    _hostile(bundle / "SHA256SUMS", "fifo")  # swapped afterwards: a re-read would block here
    assert audit.failed_verification(prefix, bundle, str(info.value), info.value.sums_sha256)
    assert audit.read(prefix)[-1]["digest"] == hashlib.sha256(sums).hexdigest()


# ------------------------------------------------------------------- 4: no hashing without a signed size


@pytest.mark.timeout(60)
def test_verify_with_a_broken_manifest_hashes_no_unsized_file(bundle: Path, keys) -> None:
    (bundle / "airpack.json").write_text("{}")  # no longer its signed bytes: no signed sizes
    _hostile(bundle / "model" / "config.json", "sparse")  # a terabyte of zeros, listed in SHA256SUMS
    before = _snapshot(bundle)
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    found = {(p.kind, p.path) for p in info.value.problems}  # type: ignore[attr-defined]
    assert ("modified", "airpack.json") in found and ("unchecked", "airpack.json") in found
    with pytest.raises(VerificationError, match="refusing to sign"):
        check_integrity(bundle)
    assert _snapshot(bundle) == before


@pytest.mark.timeout(60)
def test_a_sparse_manifest_is_not_hashed(bundle: Path, keys) -> None:
    _hostile(bundle / "airpack.json", "sparse")
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    found = {(p.kind, p.path) for p in info.value.problems}  # type: ignore[attr-defined]
    assert ("modified", "airpack.json") in found


# ---------------------------------------------------------------- 5: the weight copy stops at its size


@pytest.mark.timeout(60)
def test_the_weight_copy_stops_at_the_signed_size(tmp_path: Path) -> None:
    bundle, prefix = tmp_path / "bundle", tmp_path / "prefix"
    (bundle / "model").mkdir(parents=True)
    prefix.mkdir()
    data = os.urandom(3 * 1024 * 1024)
    (bundle / "model" / "w.bin").write_bytes(data)
    entry = Entry("model/w.bin", len(data), hashlib.sha256(data).hexdigest(), "model")
    stage = host.stage_weights(bundle, [entry], prefix)
    assert (stage / "w.bin").read_bytes() == data
    shutil.rmtree(stage)
    with (bundle / "model" / "w.bin").open("ab") as fh:  # swapped after verify: the same bytes, then a terabyte
        fh.truncate(TB)
    with pytest.raises(VerificationError, match="larger than its signed size"):
        host.stage_weights(bundle, [entry], prefix)
    assert list(prefix.iterdir()) == []


# --------------------------------------------------------------------------- 6: deep trees, no recursion

DEPTH = 1200  # deeper than the interpreter's recursion limit (1000)


@pytest.fixture
def deep() -> Iterator[Callable[[Path], None]]:
    """``deep(folder)`` nests DEPTH folders ``d`` in ``folder`` with one file at the bottom; made and removed
    by renames at the top (short paths, linear time; pathlib's and shutil's own tree functions recurse)."""
    made: list[Path] = []

    def make(folder: Path) -> None:
        (folder / "x").mkdir()
        (folder / "x" / "leaf").write_bytes(b"x")
        for _ in range(DEPTH - 1):
            (folder / "y").mkdir()
            (folder / "x").rename(folder / "y" / "d")
            (folder / "y").rename(folder / "x")
        (folder / "x").rename(folder / "d")
        made.append(folder)

    yield make
    for folder in made:
        top = folder / "d"
        while (top / "d").is_dir():
            (top / "d").rename(folder / "next")
            top.rmdir()
            (folder / "next").rename(top)
        (top / "leaf").unlink()
        top.rmdir()


@pytest.mark.timeout(120)
def test_deeply_nested_unlisted_folders(bundle: Path, keys, tmp_path: Path, deep) -> None:
    deep(bundle / "model")
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    assert [(p.kind, p.path.count("/")) for p in info.value.problems] == [("extra", DEPTH + 1)]  # type: ignore[attr-defined]
    code, _, err = cli("verify", bundle, "--key", keys.ecdsa.pub)
    assert code == 3 and "RecursionError" not in err and "internal error" not in err
    model = tmp_path / "model"
    model.mkdir()
    deep(model)
    assert list_local_files(model) == ["/".join(["d"] * DEPTH + ["leaf"])]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_hostile_spec_or_lock_does_not_hang(tmp_path: Path, kind: str) -> None:
    for name in ("airpack.yaml", "airpack.lock"):
        _hostile(tmp_path / name, kind)
    code, _, err = cli("lock", tmp_path / "airpack.yaml")
    assert code == 2 and "airpack.yaml" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(LockError, match=r"airpack\.lock"):
        read_lock(tmp_path / "airpack.lock")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
@pytest.mark.parametrize("name", ["SHA256SUMS", "SHA256SUMS.sig", "airpack.json", "model/config.json"])
def test_verify_ends_at_once_on_a_hostile_file_anywhere(bundle: Path, keys, name: str, kind: str) -> None:
    _hostile(bundle / name, kind)
    before = _snapshot(bundle)
    code, out, _ = cli("verify", bundle, "--key", keys.ecdsa.pub, "--json")
    doc = json.loads(out)
    assert code == 3 and doc["exitCode"] == 3 and doc["problems"] and "\n" not in doc["error"]
    assert any(p["path"] == name for p in doc["problems"])
    assert _snapshot(bundle) == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_a_hostile_volume_file_ends_verify_and_join_at_once(bundle: Path, keys, tmp_path: Path, kind: str) -> None:
    (vol,) = split_bundle(bundle, [keys.ecdsa.public], tmp_path / "v", 10**9)
    folder = tmp_path / "v" / vol.folder_name
    _hostile(folder / "airpack-volume.json", kind)
    before = _snapshot(folder)
    code, _, err = cli("verify", folder, "--key", keys.ecdsa.pub)
    assert code == 3 and "Traceback" not in err
    code, _, err = cli("join", folder, "--key", keys.ecdsa.pub, "--out", tmp_path / "joined")
    assert code == 3 and "airpack-volume.json" in err and not (tmp_path / "joined").exists()
    assert _snapshot(folder) == before
