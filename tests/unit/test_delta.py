"""Delta updates with real bundles: v2 changes one weight shard of v1; ``split --base`` carries only what v1 lacks,
``join --base`` takes the rest from v1 (proved against v2's signature as it copies) and gives v2 byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.bundle_layout import SUMS
from airpack.cli import app
from airpack.delta import join_with_base, read_base_sums, split_with_base
from airpack.errors import UsageError, VerificationError
from airpack.verify import verify_bundle
from airpack.volume_format import VOLUME_FILE, Volume
from airpack.volumes import join_volumes, split_bundle, verify_volume
from tests.conftest import safetensors_bytes

CHUNK = 128 * 1024
SHARD = 256 * 1024  # floats per shard: 1 MiB, 8 chunks
BIG = 10**9


def _model(folder: Path, changed_seed: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "shard-1.safetensors").write_bytes(safetensors_bytes(SHARD, seed=1))
    (folder / "shard-2.safetensors").write_bytes(safetensors_bytes(SHARD, seed=changed_seed))
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    return folder


@pytest.fixture(scope="module")
def v1v2(built_bundle, keys, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    v1 = built_bundle(_model(root / "v1", 2), key=keys.ecdsa, chunk_size=CHUNK, version="1.0.0")
    v2 = built_bundle(_model(root / "v2", 3), key=keys.ecdsa, chunk_size=CHUNK, version="2.0.0")
    return v1, v2


@pytest.fixture(scope="module")
def delta(v1v2: tuple[Path, Path], keys, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    v1, v2 = v1v2
    out = tmp_path_factory.mktemp("delta")
    vols = split_with_base(v2, [keys.ecdsa.public], out, BIG, base=v1 / SUMS)
    return [out / v.folder_name for v in vols]


def _files(bundle: Path) -> dict[str, str]:
    """path → sha256, from the bundle's SHA256SUMS."""
    return {path: sha for sha, path in (line.split("  ", 1) for line in (bundle / SUMS).read_text().splitlines())}


def _carried(vols: list[Path]) -> int:
    return sum(p["length"] for v in vols for p in json.loads((v / VOLUME_FILE).read_text())["pieces"])


def test_the_delta_carries_only_what_v1_lacks(v1v2: tuple[Path, Path], delta: list[Path], keys) -> None:
    v1, v2 = v1v2
    new, old = _files(v2), _files(v1)
    assert new["model/shard-1.safetensors"] == old["model/shard-1.safetensors"]
    assert new["model/shard-2.safetensors"] != old["model/shard-2.safetensors"]
    doc = json.loads((delta[0] / VOLUME_FILE).read_text())
    assert doc["formatVersion"] == 2
    assert doc["base"]["sums"] == read_base_sums(v1).sums_sha256
    same = sorted(p for p, h in new.items() if h in set(old.values()) and p != "airpack.json")
    assert doc["base"]["files"] == same and "model/shard-1.safetensors" in same
    carried = {p["file"] for v in delta for p in json.loads((v / VOLUME_FILE).read_text())["pieces"]}
    assert "model/shard-1.safetensors" not in carried and "model/shard-2.safetensors" in carried
    assert not any(p.name.startswith("shard-1") for v in delta for p in v.rglob("*"))
    changed = (v2 / "model/shard-2.safetensors").stat().st_size
    full = sum(p.stat().st_size for p in v2.rglob("*") if p.is_file())
    assert _carried(delta) <= changed + 16 * 1024, "the delta carries more than the changed shard and the sbom"
    assert _carried(delta) < full / 2
    for vol in delta:  # each delta volume still verifies on its own against the v2 signature
        assert verify_volume(vol, [keys.ecdsa.public]).version == "2.0.0"


def test_base_as_folder_or_sums_gives_the_same_volumes(v1v2: tuple[Path, Path], delta: list[Path], keys,
                                                       tmp_path: Path) -> None:
    v1, v2 = v1v2
    vols = split_with_base(v2, [keys.ecdsa.public], tmp_path, BIG, base=v1)
    assert [(tmp_path / v.folder_name / VOLUME_FILE).read_bytes() for v in vols] == \
        [(d / VOLUME_FILE).read_bytes() for d in delta]


def test_join_with_base_is_the_full_v2_byte_for_byte(v1v2: tuple[Path, Path], delta: list[Path], keys,
                                                     tmp_path: Path) -> None:
    v1, v2 = v1v2
    r = join_with_base(delta, [keys.ecdsa.public], tmp_path / "v2", base=v1)
    assert r.complete and r.volumes_seen == tuple(range(1, len(delta) + 1))
    diff = subprocess.run(["diff", "-r", str(v2), str(tmp_path / "v2")], capture_output=True, text=True,
                          check=False)
    assert diff.returncode == 0, diff.stdout
    assert verify_bundle(tmp_path / "v2", [keys.ecdsa.public]).manifest.version == "2.0.0"
    assert not (tmp_path / ".v2.airpack-join").exists()


def test_without_base_the_delta_join_asks_for_it_and_copies_nothing(delta: list[Path], keys,
                                                                     tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--base"):
        join_with_base(delta, [keys.ecdsa.public], tmp_path / "v2", base=None)
    assert list(tmp_path.iterdir()) == []
    r = join_volumes(delta, [keys.ecdsa.public], tmp_path / "old")  # what an old join does: never complete
    assert not r.complete and not (tmp_path / "old").exists()


def test_a_wrong_base_is_refused_naming_every_missing_file(v1v2: tuple[Path, Path], delta: list[Path], keys,
                                                           make_model, built_bundle, tmp_path: Path) -> None:
    other = built_bundle(make_model(), key=keys.ecdsa, chunk_size=CHUNK, name="other")
    needed = json.loads((delta[0] / VOLUME_FILE).read_text())["base"]["files"]
    with pytest.raises(VerificationError) as exc:
        join_with_base(delta, [keys.ecdsa.public], tmp_path / "v2", base=other)
    missing = sorted(p.path for p in exc.value.problems)
    new, held = _files(v1v2[1]), set(_files(other).values())
    assert missing == sorted(p for p in needed if new[p] not in held) and len(missing) >= 2
    assert "model/shard-1.safetensors" in missing
    assert all(p in str(exc.value) for p in missing)
    assert "made against the base" in str(exc.value)
    assert list(tmp_path.iterdir()) == []  # refused before copying: no stage, nothing published


def test_a_base_changed_after_it_was_verified_is_caught_during_the_copy(v1v2: tuple[Path, Path],
                                                                        delta: list[Path], keys,
                                                                        tmp_path: Path) -> None:
    base = tmp_path / "v1"
    shutil.copytree(v1v2[0], base)
    verify_bundle(base, [keys.ecdsa.public])
    shard = base / "model/shard-1.safetensors"
    data = bytearray(shard.read_bytes())
    data[5 * CHUNK + 7] ^= 1  # same size, one bit in the sixth chunk
    shard.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"shard-1\.safetensors.*base") as exc:
        join_with_base(delta, [keys.ecdsa.public], tmp_path / "v2", base=base)
    assert str(exc.value).startswith(f"{shard}: does not match the signed bundle (a file of the base bundle)")
    assert not (tmp_path / "v2").exists()


def test_the_base_is_matched_by_content_whatever_the_path(v1v2: tuple[Path, Path], delta: list[Path], keys,
                                                          tmp_path: Path) -> None:
    base = tmp_path / "old"
    shutil.copytree(v1v2[0], base)
    (base / "model/shard-1.safetensors").rename(base / "model/renamed.bin")
    sums = (base / SUMS).read_text().replace("  model/shard-1.safetensors\n", "  model/renamed.bin\n")
    (base / SUMS).write_text(sums)  # the base's list is a map to its bytes, never trusted: v2's signature proves
    r = join_with_base(delta, [keys.ecdsa.public], tmp_path / "v2", base=base)
    assert r.complete
    assert (tmp_path / "v2/model/shard-1.safetensors").read_bytes() == \
        (v1v2[1] / "model/shard-1.safetensors").read_bytes()
    verify_bundle(tmp_path / "v2", [keys.ecdsa.public])


def test_a_lying_base_list_is_caught_by_the_new_signature(v1v2: tuple[Path, Path], delta: list[Path], keys,
                                                          tmp_path: Path) -> None:
    base = tmp_path / "old"
    shutil.copytree(v1v2[0], base)
    # the base's SHA256SUMS says shard-2 (v1's, different bytes, same size) holds v2's unchanged shard-1
    old = _files(base)
    text = (base / SUMS).read_text()
    text = text.replace(f"{old['model/shard-1.safetensors']}  model/shard-1.safetensors\n", "")
    text = text.replace(f"{old['model/shard-2.safetensors']}  model/shard-2.safetensors",
                        f"{old['model/shard-1.safetensors']}  model/shard-2.safetensors")
    (base / SUMS).write_text(text)
    with pytest.raises(VerificationError, match="base"):
        join_with_base(delta, [keys.ecdsa.public], tmp_path / "v2", base=base)
    assert not (tmp_path / "v2").exists()


def test_small_volumes_join_one_at_a_time_with_the_base(v1v2: tuple[Path, Path], keys, tmp_path: Path) -> None:
    v1, v2 = v1v2
    vols = split_with_base(v2, [keys.ecdsa.public], tmp_path / "vols", 700_000, base=v1 / SUMS)
    assert len(vols) >= 2 and all(v.base for v in vols)
    folders = [tmp_path / "vols" / v.folder_name for v in vols]
    out = tmp_path / "v2"
    for i, folder in enumerate(reversed(folders)):
        r = join_with_base([folder], [keys.ecdsa.public], out, base=v1)
        assert r.complete == (i == len(folders) - 1) and out.exists() == r.complete
    assert subprocess.run(["diff", "-r", str(v2), str(out)], check=False).returncode == 0


def test_a_delta_against_itself_carries_no_file(v1v2: tuple[Path, Path], keys, tmp_path: Path) -> None:
    v1 = v1v2[0]
    (vol,) = split_with_base(v1, [keys.ecdsa.public], tmp_path / "vols", BIG, base=v1)
    assert vol.pieces == () and vol.base is not None and len(vol.base.files) == len(_files(v1)) - 1
    r = join_with_base([tmp_path / "vols" / vol.folder_name], [keys.ecdsa.public], tmp_path / "again", base=v1)
    assert r.complete
    assert subprocess.run(["diff", "-r", str(v1), str(tmp_path / "again")], check=False).returncode == 0


def test_volumes_of_another_split_are_not_mixed_with_a_delta(v1v2: tuple[Path, Path], delta: list[Path], keys,
                                                             tmp_path: Path) -> None:
    full = split_bundle(v1v2[1], [keys.ecdsa.public], tmp_path / "full", BIG)
    assert json.loads((tmp_path / "full" / full[0].folder_name / VOLUME_FILE).read_text())["formatVersion"] == 1
    with pytest.raises(VerificationError, match="different splits"):
        join_with_base([*delta, tmp_path / "full" / full[0].folder_name], [keys.ecdsa.public], tmp_path / "v2",
                       base=v1v2[0])


@pytest.mark.parametrize("forge", ["unlisted", "also-carried"])
def test_a_forged_base_list_is_refused(delta: list[Path], keys, tmp_path: Path, forge: str) -> None:
    vol = tmp_path / delta[0].name
    shutil.copytree(delta[0], vol)
    doc = json.loads((vol / VOLUME_FILE).read_text())
    doc["base"]["files"].append("model/evil.bin" if forge == "unlisted" else doc["pieces"][0]["file"])
    (vol / VOLUME_FILE).write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="delta split is unsound"):
        verify_volume(vol, [keys.ecdsa.public])


def test_volume_file_round_trip_and_format_rules(delta: list[Path]) -> None:
    data = (delta[0] / VOLUME_FILE).read_bytes()
    vol = Volume.from_json(data, "v")
    assert vol.base is not None and vol.to_json() == data
    doc = json.loads(data)
    doc["formatVersion"] = 1
    with pytest.raises(VerificationError, match="base given"):
        Volume.from_json(json.dumps(doc).encode(), "v")


def test_cli_split_inspect_join(v1v2: tuple[Path, Path], keys, tmp_path: Path) -> None:
    v1, v2 = v1v2
    pub = str(keys.ecdsa.pub)
    runner = CliRunner()
    r = runner.invoke(app, ["split", str(v2), "--key", pub, "--base", str(v1 / SUMS), "--size", "1GB",
                            "--out", str(tmp_path / "vols")])
    assert r.exit_code == 0, r.output
    vol = next((tmp_path / "vols").iterdir())
    r = runner.invoke(app, ["inspect", str(vol)])
    assert r.exit_code == 0, r.output
    assert "from the base bundle" in r.output and "model/shard-1.safetensors" in r.output
    r = runner.invoke(app, ["inspect", str(vol), "--json"])
    base = json.loads(r.stdout)["data"]["volume"]["base"]
    assert "model/shard-1.safetensors" in [f["path"] for f in base["files"]]
    assert base["bytes"] >= (v1 / "model/shard-1.safetensors").stat().st_size
    r = runner.invoke(app, ["join", str(vol), "--key", pub, "--out", str(tmp_path / "v2")])
    assert r.exit_code == 2 and "--base" in r.output
    r = runner.invoke(app, ["join", str(vol), "--key", pub, "--out", str(tmp_path / "v2"), "--base", str(v1)])
    assert r.exit_code == 0, r.output
    assert subprocess.run(["diff", "-r", str(v2), str(tmp_path / "v2")], check=False).returncode == 0
