"""Issue 14 items 1, 7 and 13 (and issue 19 item 7): ``sign`` signs exactly the bytes it checked and refuses a
signed bundle without ``--force``; a forged volume piece leaves no byte counted as proven; ``join --out`` inside
a source volume is refused; a dead hasher thread fails fast instead of blocking its producer forever."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack._fs import walk_tree
from airpack.bundle_sign import sign_bundle
from airpack.cli import app
from airpack.errors import AirpackError, AlreadySignedError, UsageError, VerificationError
from airpack.hashing import DigestSink
from airpack.progress import Advance
from airpack.signing import verify_bytes
from airpack.verify import verify_bundle
from airpack.volumes import VOLUME_FILE, Volume, join_volumes, split_bundle

CHUNK = 128 * 1024
CAPACITY = 640_000


def cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def _snapshot(folder: Path) -> dict[str, bytes | int]:
    return {rel: (folder / rel).read_bytes() if (folder / rel).is_file() else mode
            for rel, mode in walk_tree(folder)}


@pytest.fixture(scope="module")
def unsigned(built_bundle, make_model) -> Path:
    return built_bundle(make_model(), chunk_size=CHUNK)


@pytest.fixture
def bundle(unsigned: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(unsigned, dst, symlinks=True)
    return dst


# ------------------------------------------------------------------------------------------------ 1: sign


class _SwapWhileChecking:
    """A progress reporter that, once the check has begun, replaces SHA256SUMS on the medium with a forged list
    (what someone with write access to the medium could do between the check and a second read)."""

    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle
        self.forged = b"0" * 64 + b"  model/config.json\n"

    def task(self, description: str, total: int) -> Advance:
        (self.bundle / "SHA256SUMS").write_bytes(self.forged)
        return lambda n: None

    def done(self, advance: Advance) -> None:
        return None


@pytest.mark.timeout(60)
def test_sign_signs_the_bytes_it_checked(bundle: Path, keys) -> None:
    checked = (bundle / "SHA256SUMS").read_bytes()
    swap = _SwapWhileChecking(bundle)
    r = sign_bundle(bundle, keys.ecdsa.private, reporter=swap)
    sig = (bundle / "SHA256SUMS.sig").read_bytes()
    assert verify_bytes(keys.ecdsa.public, checked, sig) and not verify_bytes(keys.ecdsa.public, swap.forged, sig)
    assert (bundle / "SHA256SUMS").read_bytes() == checked  # the list on the medium is the one signed
    assert r.sums_sha256 == hashlib.sha256(checked).hexdigest() and r.replaced is None
    assert r.key_fingerprint == keys.ecdsa.pair.fingerprint
    verify_bundle(bundle, [keys.ecdsa.public])


@pytest.mark.timeout(60)
def test_sign_refuses_a_signed_bundle_and_names_the_signer(bundle: Path, keys) -> None:
    sign_bundle(bundle, keys.ecdsa.private)
    signed = _snapshot(bundle)
    with pytest.raises(AlreadySignedError, match=f"already signed by {keys.ecdsa.pair.fingerprint}") as info:
        sign_bundle(bundle, keys.ecdsa.private)  # the same key: its fingerprint is known
    assert info.value.exit_code == 2 and "--force" in str(info.value)
    with pytest.raises(AlreadySignedError, match="already signed by an unknown key"):
        sign_bundle(bundle, keys.foreign_ecdsa.private)
    with pytest.raises(AlreadySignedError, match=f"already signed by {keys.ecdsa.pair.fingerprint}"):
        sign_bundle(bundle, keys.foreign_ecdsa.private, known=[keys.ed25519.public, keys.ecdsa.public])
    assert _snapshot(bundle) == signed
    r = sign_bundle(bundle, keys.foreign_ecdsa.private, force=True, known=[keys.ecdsa.public])
    assert r.replaced == keys.ecdsa.pair.fingerprint
    verify_bundle(bundle, [keys.foreign_ecdsa.public])

    code, _, err = cli("sign", bundle, "--key", keys.ecdsa.key)
    assert code == 2 and "already signed by an unknown key" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("sign", bundle, "--key", keys.ecdsa.key, "--pub", keys.foreign_ecdsa.pub)
    assert code == 2 and keys.foreign_ecdsa.pair.fingerprint in err
    code, out, _ = cli("sign", bundle, "--key", keys.ecdsa.key, "--force", "--json")
    assert code == 0 and json.loads(out)["data"]["replaced"] == "an unknown key"
    verify_bundle(bundle, [keys.ecdsa.public])


@pytest.mark.timeout(30)
def test_sign_does_not_block_on_a_fifo_checksum_list(bundle: Path, keys) -> None:
    (bundle / "SHA256SUMS").unlink()
    os.mkfifo(bundle / "SHA256SUMS")
    code, _, err = cli("sign", bundle, "--key", keys.ecdsa.key)
    assert code == 3 and "SHA256SUMS" in err
    assert not (bundle / "SHA256SUMS.sig").exists()


# ------------------------------------------------------------------------------------------------ 7: join


@pytest.fixture(scope="module")
def split(built_bundle, make_model, keys, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    model = make_model()
    (model / "extra.safetensors").write_bytes(os.urandom(700_000))
    signed = built_bundle(model, key=keys.ecdsa, chunk_size=CHUNK)
    out = tmp_path_factory.mktemp("volumes")
    return [out / v.folder_name for v in split_bundle(signed, [keys.ecdsa.public], out, CAPACITY)]


def _forge(split: list[Path], tmp_path: Path) -> tuple[int, Path]:
    """A copy of another volume, carrying in front a forged piece over bytes that volume ``a`` proves."""
    vols = [Volume.from_json((v / VOLUME_FILE).read_bytes(), str(v)) for v in split]
    a, proven = next((i, p) for i, v in enumerate(vols) for p in v.pieces if not p.whole and p.length > CHUNK)
    b = (a + 1) % len(split)
    forged = tmp_path / split[b].name
    shutil.copytree(split[b], forged)
    doc = json.loads((forged / VOLUME_FILE).read_text())
    name = f"{proven.file}.part900"
    doc["pieces"].insert(0, {"file": proven.file, "offset": proven.offset, "length": CHUNK, "size": proven.size,
                             "name": name})
    (forged / VOLUME_FILE).write_text(json.dumps(doc))
    (forged / name).write_bytes(os.urandom(CHUNK))
    return a, forged


@pytest.mark.timeout(120)
def test_a_forged_piece_leaves_no_proven_bytes_behind(split: list[Path], keys, tmp_path: Path) -> None:
    a, forged = _forge(split, tmp_path)
    out = tmp_path / "joined"
    join_volumes([split[a]], [keys.ecdsa.public], out)  # its ranges are proven
    with pytest.raises(VerificationError, match="does not match the signed bundle"):
        join_volumes([forged], [keys.ecdsa.public], out)  # ... and then overwritten by a forged piece
    r = join_volumes([v for i, v in enumerate(split) if i != a], [keys.ecdsa.public], out)
    assert not r.complete and a + 1 in r.missing and not out.exists()  # what the forgery touched is owed again
    r = join_volumes([split[a]], [keys.ecdsa.public], out)
    assert r.complete
    verify_bundle(out, [keys.ecdsa.public])


@pytest.mark.timeout(120)
def test_forged_pieces_that_cannot_be_proved_alone_are_dropped_with_their_file(split: list[Path], keys,
                                                                               tmp_path: Path) -> None:
    vols = [Volume.from_json((v / VOLUME_FILE).read_bytes(), str(v)) for v in split]
    big = next(p for v in vols for p in v.pieces if not p.whole)
    forged = tmp_path / split[0].name
    shutil.copytree(split[0], forged)
    doc = json.loads((forged / VOLUME_FILE).read_text())
    for k, (off, length) in enumerate(((0, big.size - 1), (big.size - 1, 1))):  # off chunk boundaries
        name = f"{big.file}.part{900 + k}"
        doc["pieces"].append({"file": big.file, "offset": off, "length": length, "size": big.size, "name": name})
        (forged / name).write_bytes(os.urandom(length))
    (forged / VOLUME_FILE).write_text(json.dumps(doc))
    out = tmp_path / "joined"
    assert not join_volumes(split[1:], [keys.ecdsa.public], out).complete
    with pytest.raises(VerificationError, match="joined bytes do not match the signed bundle"):
        join_volumes([forged], [keys.ecdsa.public], out)  # every byte "in", the whole-file check fails
    assert not out.exists()
    r = join_volumes(split, [keys.ecdsa.public], out)  # the file's pieces are owed again, and copied again
    assert r.complete
    verify_bundle(out, [keys.ecdsa.public])


@pytest.mark.timeout(60)
def test_join_out_inside_a_source_volume_is_refused(split: list[Path], keys, tmp_path: Path) -> None:
    vol = tmp_path / split[0].name
    shutil.copytree(split[0], vol)
    before = _snapshot(vol)
    with pytest.raises(UsageError, match="inside one another"):
        join_volumes([vol], [keys.ecdsa.public], vol / "model" / "out")
    code, _, err = cli("join", vol, "--key", keys.ecdsa.pub, "--out", vol / "joined")
    assert code == 2 and "inside one another" in err
    with pytest.raises(UsageError, match="inside one another"):  # a source inside --out
        join_volumes([vol], [keys.ecdsa.public], tmp_path)
    assert _snapshot(vol) == before


# ---------------------------------------------------------------------------------------- 13: dead hasher


@pytest.mark.timeout(30)
def test_a_dead_hasher_thread_fails_fast() -> None:
    sink = DigestSink()
    sink.update("not bytes")  # type: ignore[arg-type]  # the hasher thread dies on it
    with pytest.raises(AirpackError, match="the hashing thread stopped"):
        for _ in range(64):  # far more than the queue holds: a producer blocked forever before
            sink.update(b"x" * (4 << 20))
        sink.close()
