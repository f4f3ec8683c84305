"""The bundle layout: SHA256SUMS in GNU format, ``airpack.json``'s inventory and chunk digests, plain weights."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest

from airpack.bundle_layout import ATTESTATIONS, FORMAT_VERSION, Entry, Manifest, parse_sums, render_sums
from tests import sha256_ref

H = "0123456789abcdef" * 4


def test_render_sums_is_gnu_format_sorted_bytewise() -> None:
    out = render_sums({"model/a.json": H, "model/B.json": H.upper().lower(), "airpack.json": H,
                       "model/_x": H, "model/\u00e9": H, "model/Z": H})
    lines = out.decode().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "airpack.json", "model/B.json", "model/Z", "model/_x", "model/a.json", "model/\u00e9"]
    assert all(line == f"{H}  {line[66:]}" for line in lines)
    assert out.endswith(b"\n")
    assert render_sums({}) == b""


def test_parse_sums_round_trips_and_flags_every_bad_line() -> None:
    good = render_sums({"a": H, "b/c": H})
    lines, bad = parse_sums(good)
    assert [(x.line, x.sha256, x.path) for x in lines] == [(1, H, "a"), (2, H, "b/c")] and bad == []
    data = (f"{H}  ok\n{H} one-space\n{H.upper()}  upper\n{H[:-1]}  short\n{H} *binary\n\n{H}  tail").encode()
    lines, bad = parse_sums(data)
    assert [x.path for x in lines] == ["ok", "tail"]
    assert bad == [(7, "last line is not terminated (truncated file?)"), (2, "not '<64 hex>  <path>'"),
                   (3, "not '<64 hex>  <path>'"), (4, "not '<64 hex>  <path>'"), (5, "not '<64 hex>  <path>'"),
                   (6, "not '<64 hex>  <path>'")]
    assert parse_sums(b"\xff\xfe") == ([], [(0, "not UTF-8")])


def _manifest(**kw) -> Manifest:
    base = {"name": "m", "version": "1.0.0", "created": "2023-11-14T22:13:20Z", "airpack_version": "0.1.0",
            "spec": {"name": "m"}, "lock": {"lockVersion": 1},
            "files": (Entry("model/w", 200, H, "model", 64, (H, H, H)), Entry("model/c", 1, H, "model"))}
    base.update(kw)
    return Manifest(**base)


def test_manifest_round_trips_and_keeps_unknown_keys() -> None:
    m = _manifest(extra={"sbom": {"x": 1}})
    d = json.loads(m.to_json())
    assert d["format"] == "airpack-bundle" and d["formatVersion"] == FORMAT_VERSION and d["sbom"] == {"x": 1}
    assert d["files"][0]["chunks"] == {"size": 64, "chain": [H, H, H]} and "chunks" not in d["files"][1]
    again = Manifest.from_json(m.to_json())
    assert again == m and again.extra == {"sbom": {"x": 1}} and again.to_json() == m.to_json()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="zarf"), "not an airpack bundle manifest"),
    (lambda d: d.update(formatVersion=FORMAT_VERSION + 1), "newer than this airpack reads"),
    (lambda d: d.update(formatVersion="1"), "newer than this airpack reads"),
    (lambda d: d["files"][0].update(sha256="XYZ"), "bad inventory entry"),
    (lambda d: d["files"][0].update(size=-1), "bad inventory entry"),
    (lambda d: d["files"][0]["chunks"]["chain"].pop(), "does not cover its 200 bytes"),
    (lambda d: d["files"][0]["chunks"]["chain"].append(H), "does not cover its 200 bytes"),
    (lambda d: d["files"][0]["chunks"].update(size=0), "does not cover"),
    (lambda d: d["files"][0]["chunks"].update(size=50), "does not cover"),  # 4 chunks, but not whole blocks
    (lambda d: d["files"][0]["chunks"]["chain"].__setitem__(0, "X" * 64), "does not cover"),
    (lambda d: d.update(formatVersion=1), "written by a pre-release airpack; rebuild"),  # format 1: dropped
])
def test_manifest_rejects_malformed(mutate, message: str) -> None:
    d = json.loads(_manifest().to_json())
    mutate(d)
    with pytest.raises(ValueError, match=message):
        Manifest.from_json(json.dumps(d).encode())


# ----------------------------------------------------------------------------------------- a built bundle

CHUNK = 256 * 1024


@pytest.fixture
def bundle(small_model: Path, built_bundle, keys) -> Path:
    for name in ("Zeta.json", "_meta.json", "a.json"):
        (small_model / name).write_text(json.dumps({"name": name}))
    (small_model / "sub").mkdir()
    (small_model / "sub" / "b.json").write_text("{}")
    return built_bundle(small_model, key=keys.ecdsa, chunk_size=CHUNK)


def _files(bundle: Path) -> list[str]:
    return sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if not p.is_dir())


def test_sha256sums_lists_every_file_but_itself_sorted_bytewise(bundle: Path) -> None:
    text = (bundle / "SHA256SUMS").read_bytes().decode()
    lines = text.splitlines()
    paths = [line[66:] for line in lines]
    assert paths == sorted(paths, key=str.encode)
    assert paths == ["airpack.json", "model/Zeta.json", "model/_meta.json", "model/a.json", "model/config.json",
                     "model/model.safetensors", "model/sub/b.json", "model/tokenizer.json", "sbom/bom.cdx.json"]
    assert set(paths) == set(_files(bundle)) - {"SHA256SUMS", "SHA256SUMS.sig", *ATTESTATIONS}
    for line in lines:
        digest, path = line.split("  ", 1)
        assert digest == hashlib.sha256((bundle / path).read_bytes()).hexdigest()
    r = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": OK") == len(lines)


def test_manifest_inventory_matches_the_files(bundle: Path, small_model: Path) -> None:
    m = Manifest.from_json((bundle / "airpack.json").read_bytes())
    on_disk = set(_files(bundle)) - {"SHA256SUMS", "SHA256SUMS.sig", "airpack.json", *ATTESTATIONS}
    assert {e.path for e in m.files} == on_disk
    for e in m.files:
        data = (bundle / e.path).read_bytes()
        kind = "sbom" if e.path == "sbom/bom.cdx.json" else "model"
        assert (e.size, e.sha256, e.kind) == (len(data), hashlib.sha256(data).hexdigest(), kind)
    assert m.name == "test-model" and m.version == "1.0.0"
    assert m.created == "2023-11-14T22:13:20Z"  # SOURCE_DATE_EPOCH=1700000000
    assert m.lock["model"]["files"] == [
        {"path": e.path.removeprefix("model/"), "size": e.size, "sha256": e.sha256} for e in m.files
        if e.kind == "model"]
    assert m.spec["model"]["path"] == str(small_model.resolve())


def test_large_files_carry_chunk_chaining_values(bundle: Path) -> None:
    m = Manifest.from_json((bundle / "airpack.json").read_bytes())
    big = next(e for e in m.files if e.path == "model/model.safetensors")
    data = (bundle / big.path).read_bytes()
    assert len(data) > 4 * CHUNK and big.chunk_size == CHUNK
    assert big.chain == sha256_ref.chain_values(data, CHUNK)  # an independent SHA-256 agrees
    small = [e for e in m.files if e.path != big.path]
    assert all(e.chain == () and e.chunk_size == 0 for e in small)
    d = json.loads((bundle / "airpack.json").read_text())
    assert all("chunks" not in f for f in d["files"] if f["path"] != big.path)


def test_default_chunk_size_leaves_small_files_whole(small_model: Path, built_bundle) -> None:
    b = built_bundle(small_model)
    assert all(e.chain == () for e in Manifest.from_json((b / "airpack.json").read_bytes()).files)
    assert not (b / "SHA256SUMS.sig").exists()


def test_weights_are_byte_identical_plain_files(bundle: Path, small_model: Path) -> None:
    for src in small_model.rglob("*"):
        if src.is_dir():
            continue
        dst = bundle / "model" / src.relative_to(small_model)
        st = dst.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1, dst
        assert not src.samefile(dst)
        assert dst.read_bytes() == src.read_bytes()
    # no staging leftovers
    assert not any(p.name.endswith((".part", ".tmp")) for p in bundle.rglob("*"))
    assert not any(p.name.startswith(".") for p in bundle.parent.iterdir())


def test_builds_are_reproducible(small_model: Path, built_bundle, keys) -> None:
    a = built_bundle(small_model, key=keys.ed25519, epoch=1_600_000_000)
    b = built_bundle(small_model, key=keys.ed25519, epoch=1_600_000_000)
    c = built_bundle(small_model, key=keys.ed25519, epoch=1_600_000_001)
    for name in ("SHA256SUMS", "SHA256SUMS.sig", "airpack.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "SHA256SUMS").read_bytes() != (c / "SHA256SUMS").read_bytes()


def test_a_resumed_build_publishes_no_leftover_of_the_killed_one(small_model: Path, keys, tmp_path: Path) -> None:
    """A build killed in an atomic write (its ``.tmp``) or after signing with another key leaves files in the
    staging folder; the resumed build publishes only what it listed (and signed)."""
    from airpack.bundle import _prepare_staging, build_bundle
    from airpack.hashing import sha256_bytes
    from airpack.locking import resolve
    from airpack.spec import load_spec
    from tests.conftest import spec_text

    spec_path = tmp_path / "airpack.yaml"
    spec_path.write_text(spec_text(str(small_model.resolve())))
    spec = load_spec(spec_path)
    lock = resolve(spec, cache_dir=tmp_path / "cache")
    out = tmp_path / "out"
    stage, _ = _prepare_staging(out, sha256_bytes(lock.to_json()))  # as a killed run of this lock left it
    (stage / "bundle" / ".SHA256SUMS.k0jdtkpu.tmp").write_bytes(b"half a list")
    (stage / "bundle" / "signatures").mkdir()
    (stage / "bundle" / "signatures" / "model.sig").write_bytes(b"another key's")
    (stage / "bundle" / "stray" / "deep").mkdir(parents=True)
    build_bundle(spec, lock, out, key=None, cache_dir=tmp_path / "cache")  # unsigned this time
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    found = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert found == listed | {"SHA256SUMS"}
    assert not (out / "stray").exists() and not (out / "signatures").exists()
