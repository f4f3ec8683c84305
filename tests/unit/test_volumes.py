"""Volumes for removable media: planning, writing, checking one volume alone, joining in any order and one run
at a time, and refusing what is not the signed bundle (tampered pieces, other builds, links, bad names)."""

from __future__ import annotations

import base64
import filecmp
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.errors import BuildError, UsageError, VerificationError
from airpack.verify import signed_root, verify_bundle
from airpack.volumes import (
    VOLUME_FILE,
    Volume,
    join_volumes,
    parse_size,
    plan_volumes,
    split_bundle,
    verify_volume,
)

CHUNK = 128 * 1024
CAPACITY = 640_000


@pytest.fixture(scope="module")
def bundle(built_bundle, make_model, keys) -> Path:
    model = make_model()  # model.safetensors: 1 MiB + header, 9 chunks of 128 KiB
    (model / "extra.safetensors").write_bytes(os.urandom(700_000))
    for i in range(5):
        (model / f"small-{i}.json").write_text(json.dumps({"i": i}))
    return built_bundle(model, key=keys.ecdsa, chunk_size=CHUNK)


@pytest.fixture(scope="module")
def split(bundle: Path, keys, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("volumes")
    vols = split_bundle(bundle, [keys.ecdsa.public], out, CAPACITY)
    return [out / v.folder_name for v in vols]


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _copy(vol: Path, tmp_path: Path) -> Path:
    dst = tmp_path / vol.name
    shutil.copytree(vol, dst, symlinks=True)
    return dst


def test_parse_size() -> None:
    assert parse_size("32GB") == 32 * 10**9 and parse_size("4GiB") == 4 * 2**30
    assert parse_size("700M") == 700 * 10**6 and parse_size("4095MiB") == 4095 * 2**20
    assert parse_size("12345") == 12345 and parse_size("1.5 GB") == 1_500_000_000
    with pytest.raises(UsageError, match="not a size"):
        parse_size("lots")


def test_plan_covers_every_file_once_and_splits_only_large_files(bundle: Path, keys) -> None:
    root = signed_root(bundle, [keys.ecdsa.public])
    vols = plan_volumes(root, CAPACITY)
    assert len(vols) >= 3 and all(v.count == len(vols) for v in vols)
    entries = {e.path: e for e in root.manifest.files}
    covered: dict[str, list[tuple[int, int]]] = {}
    for v in vols:
        for p in v.pieces:
            covered.setdefault(p.file, []).append((p.offset, p.length))
            if not p.whole:
                assert entries[p.file].chain, "only a chunked file is split"
                assert p.offset % CHUNK == 0 and (p.length % CHUNK == 0 or p.offset + p.length == p.size)
                assert p.name.startswith(p.file + ".part")
            else:
                assert p.name == p.file
    assert set(covered) == set(root.listed) - {"airpack.json"}
    for rel, spans in covered.items():
        pos = 0
        for off, length in sorted(spans):
            assert off == pos
            pos += length
        assert pos == entries[rel].size
    small = [p for v in vols for p in v.pieces if p.file.endswith(".json")]
    assert all(p.whole for p in small)


def test_each_volume_fits_and_verifies_alone(split: list[Path], keys, tmp_path: Path) -> None:
    for i, vol in enumerate(split, 1):
        assert _tree_bytes(vol) <= CAPACITY
        report = verify_volume(vol, [keys.ecdsa.public])
        assert (report.index, report.count) == (i, len(split))
        # An independent check of the root each volume carries: openssl verifies its signature.
        der = tmp_path / f"sig{i}.der"
        der.write_bytes(base64.b64decode((vol / "SHA256SUMS.sig").read_bytes()))
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(keys.ecdsa.pair.public_path),
                            "-signature", str(der), str(vol / "SHA256SUMS")], capture_output=True, timeout=30,
                           check=False)
        assert r.returncode == 0, r.stderr
    with pytest.raises(VerificationError):
        verify_volume(split[0], [keys.foreign_ecdsa.public])


def test_max_file_caps_every_piece(bundle: Path, keys) -> None:
    root = signed_root(bundle, [keys.ecdsa.public])
    vols = plan_volumes(root, 10**7, max_file=300_000)
    assert len(vols) == 1
    big = [p for p in vols[0].pieces if p.file.endswith("model.safetensors")]
    assert len(big) >= 4 and all(p.length <= 300_000 for p in big)


def test_a_volume_too_small_is_refused(bundle: Path, keys) -> None:
    root = signed_root(bundle, [keys.ecdsa.public])
    with pytest.raises(UsageError, match="cannot even hold"):
        plan_volumes(root, 10_000)


def test_join_one_volume_per_run_in_any_order(split: list[Path], bundle: Path, keys, tmp_path: Path) -> None:
    out = tmp_path / "joined"
    order = list(reversed(split))
    for n, vol in enumerate(order, 1):
        r = join_volumes([vol], [keys.ecdsa.public], out)
        assert r.complete == (n == len(order))
        assert r.missing == (() if r.complete else tuple(sorted(i for i in range(1, len(split) + 1)
                                                                  if i not in r.volumes_seen)))
        assert out.exists() == r.complete
    again = join_volumes([split[0]], [keys.ecdsa.public], tmp_path / "second")  # a fresh join, one volume in
    assert not again.complete and again.volumes_seen == (1,)
    vb = verify_bundle(out, [keys.ecdsa.public])
    assert vb.manifest.name == "test-model"
    cmp = filecmp.dircmp(bundle, out)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files
    for rel in signed_root(bundle, [keys.ecdsa.public]).listed:
        assert (out / rel).read_bytes() == (bundle / rel).read_bytes()
    assert not (tmp_path / ".joined.airpack-join").exists()
    for vol in split:  # the source volumes are never changed
        verify_volume(vol, [keys.ecdsa.public])


def test_a_volume_given_twice_is_joined_once(split: list[Path], keys, tmp_path: Path) -> None:
    r = join_volumes([split[1], split[1]], [keys.ecdsa.public], tmp_path / "j")
    assert r.volumes_seen == (2,) and r.added_bytes == sum(
        p.length for p in Volume.from_json((split[1] / VOLUME_FILE).read_bytes(), "v").pieces)
    r2 = join_volumes([split[1]], [keys.ecdsa.public], tmp_path / "j")
    assert r2.added_bytes == 0


def test_a_tampered_piece_is_caught_alone_and_while_joining(split: list[Path], keys, tmp_path: Path) -> None:
    vol = _copy(split[1], tmp_path)
    doc = Volume.from_json((vol / VOLUME_FILE).read_bytes(), "v")
    part = next(p for p in doc.pieces if not p.whole)
    with (vol / part.name).open("r+b") as fh:
        fh.seek(part.length // 2)
        byte = fh.read(1)
        fh.seek(part.length // 2)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(VerificationError, match="does not match the signed bundle"):
        verify_volume(vol, [keys.ecdsa.public])
    out = tmp_path / "joined"
    join_volumes([split[0]], [keys.ecdsa.public], out)
    with pytest.raises(VerificationError, match="does not match the signed bundle"):
        join_volumes([vol], [keys.ecdsa.public], out)
    assert not out.exists()
    r = join_volumes(split[1:], [keys.ecdsa.public], out)  # the good copy of that volume: the join completes
    assert r.complete
    verify_bundle(out, [keys.ecdsa.public])


def test_a_pulled_disk_leaves_a_short_piece_and_a_rerun_finishes(split: list[Path], keys, tmp_path: Path) -> None:
    vol = _copy(split[0], tmp_path)
    doc = Volume.from_json((vol / VOLUME_FILE).read_bytes(), "v")
    last = doc.pieces[-1]
    with (vol / last.name).open("r+b") as fh:
        fh.truncate(last.length // 2)
    out = tmp_path / "joined"
    with pytest.raises(VerificationError):
        join_volumes([vol], [keys.ecdsa.public], out)
    r = join_volumes(split[1:], [keys.ecdsa.public], out)  # the others: volume 1 is still owed, in part
    assert not r.complete and r.missing == (1,) and r.missing_files >= 1
    r = join_volumes([split[0]], [keys.ecdsa.public], out)
    assert r.complete
    verify_bundle(out, [keys.ecdsa.public])


def test_a_volume_of_another_build_is_refused(split: list[Path], built_bundle, make_model, keys,
                                              tmp_path: Path) -> None:
    other = built_bundle(make_model(n_floats=300_000), key=keys.ecdsa, chunk_size=CHUNK)
    vols = split_bundle(other, [keys.ecdsa.public], tmp_path / "other", CAPACITY)
    out = tmp_path / "joined"
    join_volumes([split[0]], [keys.ecdsa.public], out)
    with pytest.raises(VerificationError, match="another bundle or build"):
        join_volumes([tmp_path / "other" / vols[1].folder_name], [keys.ecdsa.public], out)


@pytest.mark.parametrize("edit", ["traversal", "unlisted", "renamed", "other-sums"])
def test_a_forged_volume_file_is_refused(split: list[Path], keys, tmp_path: Path, edit: str) -> None:
    vol = _copy(split[0], tmp_path)
    doc = json.loads((vol / VOLUME_FILE).read_text())
    piece = doc["pieces"][0]
    if edit == "traversal":
        piece["file"] = piece["name"] = "../../etc/passwd"
    elif edit == "unlisted":
        piece["file"] = piece["name"] = "model/not-signed.bin"
    elif edit == "renamed":
        piece["name"] = "model/elsewhere"
    else:
        doc["bundle"]["sums"] = "0" * 64
    (vol / VOLUME_FILE).write_text(json.dumps(doc))
    with pytest.raises(VerificationError):
        verify_volume(vol, [keys.ecdsa.public])
    with pytest.raises(VerificationError):
        join_volumes([vol], [keys.ecdsa.public], tmp_path / "joined")
    assert not (tmp_path / "joined").exists() and not (tmp_path / ".." / "etc").exists()


def test_links_and_extra_files_in_a_volume_are_refused(split: list[Path], keys, tmp_path: Path) -> None:
    vol = _copy(split[0], tmp_path)
    (vol / "model" / "stray.txt").write_text("x")
    with pytest.raises(VerificationError, match="not part of the volume"):
        verify_volume(vol, [keys.ecdsa.public])
    (vol / "model" / "stray.txt").unlink()
    doc = Volume.from_json((vol / VOLUME_FILE).read_bytes(), "v")
    piece = doc.pieces[0]
    real = tmp_path / "real"
    shutil.move(vol / piece.name, real)
    (vol / piece.name).symlink_to(real)
    with pytest.raises(VerificationError, match="not a regular file"):
        verify_volume(vol, [keys.ecdsa.public])
    with pytest.raises(VerificationError, match="not a regular file"):
        join_volumes([vol], [keys.ecdsa.public], tmp_path / "joined")


def test_split_writes_one_volume_on_request_and_never_over_an_existing_one(bundle: Path, keys,
                                                                            tmp_path: Path) -> None:
    vols = split_bundle(bundle, [keys.ecdsa.public], tmp_path, CAPACITY, only=2)
    assert [p.name for p in tmp_path.iterdir()] == [vols[1].folder_name]
    with pytest.raises(UsageError, match="already exists"):
        split_bundle(bundle, [keys.ecdsa.public], tmp_path, CAPACITY, only=2)
    with pytest.raises(UsageError, match="has 4 volume"):
        split_bundle(bundle, [keys.ecdsa.public], tmp_path, CAPACITY, only=9)


def test_the_commands_split_verify_and_join(bundle: Path, keys, tmp_path: Path) -> None:
    def cli(*args: object) -> tuple[int, dict]:
        result = CliRunner().invoke(app, [*map(str, args), "--json"])
        assert "Traceback" not in result.output
        return result.exit_code, json.loads(result.stdout)

    pub = keys.ecdsa.pair.public_path
    code, doc = cli("split", bundle, "--key", pub, "--out", tmp_path / "v", "--size", "640kB")
    assert code == 0 and doc["data"]["count"] == 4
    folders = [Path(v["folder"]) for v in doc["data"]["volumes"]]
    code, doc = cli("verify", folders[2], "--key", pub)
    assert code == 0 and (doc["data"]["volume"], doc["data"]["count"]) == (3, 4)
    code, doc = cli("join", folders[0], folders[1], "--key", pub, "--out", tmp_path / "b")
    assert code == 0 and not doc["data"]["complete"] and doc["data"]["missing"] == [3, 4]
    code, doc = cli("join", folders[3], folders[2], "--key", pub, "--out", tmp_path / "b")
    assert code == 0 and doc["data"]["complete"]
    assert cli("verify", tmp_path / "b", "--key", pub)[0] == 0
    (folders[1] / "model" / "stray").write_text("x")
    assert cli("verify", folders[1], "--key", pub)[0] == 3
    assert cli("split", bundle, "--key", pub, "--out", tmp_path / "w", "--size", "9kB")[0] == 2


def test_a_medium_without_room_is_refused_before_writing(bundle: Path, split: list[Path], keys, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A full medium cannot be made here without root: the free-space query answers "nothing left".
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: SimpleNamespace(total=10, used=10, free=0))
    with pytest.raises(BuildError, match=r": 0 B free, [\d.]+ [kM]B needed"):
        split_bundle(bundle, [keys.ecdsa.public], tmp_path / "v", CAPACITY)
    assert not list((tmp_path / "v").iterdir())
    with pytest.raises(BuildError, match=r": 0 B free, [\d.]+ [kM]B needed"):
        join_volumes(split, [keys.ecdsa.public], tmp_path / "j")
    assert not (tmp_path / "j").exists()
