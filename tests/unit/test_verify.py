"""Verification as a library call: every problem at once, chunk digests used, non-regular files refused without
blocking, and never a write into the bundle."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import tamper

import airpack.verify
from airpack.errors import VerificationError
from airpack.hashing import RangeCheck
from airpack.verify import VerifiedBundle, check_integrity, verify_bundle

CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def pristine(built_bundle, make_model, keys) -> Path:
    return built_bundle(make_model(), key=keys.ecdsa, chunk_size=CHUNK)


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(pristine, dst, symlinks=True)
    return dst


@pytest.fixture
def ctx(keys, tmp_path: Path) -> tamper.Context:
    (tmp_path / "outside").mkdir()
    return tamper.Context(keys.ecdsa.private, keys.foreign_ecdsa.private, tmp_path / "outside", CHUNK)


def problems_of(bundle: Path, keys) -> set[tuple[str, str]]:
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    assert info.value.exit_code == 3
    found = [(p.kind, p.path) for p in info.value.problems]  # type: ignore[attr-defined]
    assert len(found) == len(set(found)), f"a problem reported twice: {found}"
    return set(found)


def _rewrite_sums(bundle: Path, key, edit) -> None:
    lines = (bundle / "SHA256SUMS").read_text().splitlines(keepends=True)
    (bundle / "SHA256SUMS").write_text("".join(edit(lines)))
    tamper.resign(bundle, key)


def test_a_good_bundle(bundle: Path, keys) -> None:
    vb = verify_bundle(bundle, [keys.ecdsa.public])
    assert vb.key_fingerprint == keys.ecdsa.pair.fingerprint
    assert vb.sums_sha256 == hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()
    assert vb.total_bytes == sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()
                                 and not p.name.startswith("SHA256SUMS") and p.parent.name != "signatures")
    assert [state.split(" ")[0] for _, state in vb.attestations] == ["verified", "verified"]
    assert vb.manifest.name == "test-model" and vb.path == bundle


def test_any_trusted_key_may_have_signed(bundle: Path, keys) -> None:
    vb = verify_bundle(bundle, [keys.ed25519.public, keys.foreign_ecdsa.public, keys.ecdsa.public])
    assert vb.key_fingerprint == keys.ecdsa.pair.fingerprint
    with pytest.raises(VerificationError, match="signature does not match"):
        verify_bundle(bundle, [keys.foreign_ecdsa.public, keys.ed25519.public])
    with pytest.raises(VerificationError, match="no trusted public key"):
        verify_bundle(bundle, [])


def test_verified_bundle_is_only_made_by_verify(bundle: Path, keys) -> None:
    vb = verify_bundle(bundle, [keys.ecdsa.public])
    with pytest.raises(TypeError, match="only made by"):
        VerifiedBundle(vb.path, vb.manifest, vb.sums_sha256, vb.key_fingerprint, vb.total_bytes, object())


def test_not_a_bundle_folder(tmp_path: Path, bundle: Path, keys) -> None:
    with pytest.raises(VerificationError, match="no such bundle"):
        verify_bundle(tmp_path / "nope", [keys.ecdsa.public])
    (tmp_path / "link").symlink_to(bundle, target_is_directory=True)
    with pytest.raises(VerificationError, match="not a bundle folder"):
        verify_bundle(tmp_path / "link", [keys.ecdsa.public])
    with pytest.raises(VerificationError, match="not a bundle folder"):
        verify_bundle(bundle / "airpack.json", [keys.ecdsa.public])


def test_every_problem_is_reported_at_once(bundle: Path, keys, ctx: tamper.Context) -> None:
    expected: set[tuple[str, str]] = set()
    for case in (tamper.flipped_byte, tamper.extra_file, tamper.missing_file):
        expected |= case(bundle, ctx).problems
    assert len(expected) == 3
    assert problems_of(bundle, keys) == expected
    tamper.chunk_changed(bundle, ctx)
    (bundle / "images").mkdir()
    (bundle / "images" / "x").write_text("x")
    assert problems_of(bundle, keys) == expected | {("modified", tamper.BIG), ("extra", "images/x")}


def test_the_message_counts_the_problems(bundle: Path, keys, ctx: tamper.Context) -> None:
    tamper.flipped_byte(bundle, ctx)
    tamper.missing_file(bundle, ctx)
    with pytest.raises(VerificationError, match=r"2 problems \(first: modified model/config.json\)"):
        verify_bundle(bundle, [keys.ecdsa.public])


def test_verify_uses_the_chunk_digests(bundle: Path, keys, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[RangeCheck] = []
    real = airpack.verify.check_ranges

    def spy(jobs, **kw):
        jobs = list(jobs)
        seen.extend(jobs)
        return real(jobs, **kw)

    monkeypatch.setattr(airpack.verify, "check_ranges", spy)
    verify_bundle(bundle, [keys.ecdsa.public])
    big = sorted((j for j in seen if j.key == tamper.BIG), key=lambda j: j.offset)
    size = (bundle / tamper.BIG).stat().st_size
    assert len(big) == -(-size // CHUNK) >= 4
    assert [(j.offset, j.length) for j in big] == [(i, min(CHUNK, size - i)) for i in range(0, size, CHUNK)]
    # Chained: each chunk resumes from the value the previous one must reach; the last one ends at the digest
    # that SHA256SUMS signs, so the whole-file SHA-256 itself is proven, on every core.
    assert [j.start for j in big[1:]] == [j.expect for j in big[:-1]] and big[0].start is None
    assert big[-1].final and big[-1].expect == hashlib.sha256((bundle / tamper.BIG).read_bytes()).hexdigest()
    assert len([j for j in seen if j.key == tamper.CONFIG]) == 1


def test_a_chunk_change_is_caught_by_its_chunk(bundle: Path, keys, ctx: tamper.Context) -> None:
    verify_bundle(bundle, [keys.ecdsa.public])
    tamper.chunk_changed(bundle, ctx)
    assert problems_of(bundle, keys) == {("modified", tamper.BIG)}


@pytest.mark.timeout(20)
def test_fifos_are_refused_without_blocking(bundle: Path, keys) -> None:
    (bundle / tamper.CONFIG).unlink()
    os.mkfifo(bundle / tamper.CONFIG)
    os.mkfifo(bundle / "model" / "extra-fifo")
    assert problems_of(bundle, keys) == {("not-regular-file", tamper.CONFIG), ("extra", "model/extra-fifo")}
    (bundle / "SHA256SUMS").unlink()
    os.mkfifo(bundle / "SHA256SUMS")
    assert problems_of(bundle, keys) == {("not-regular-file", "SHA256SUMS")}


@pytest.mark.timeout(20)
def test_a_fifo_manifest_does_not_block(bundle: Path, keys) -> None:
    (bundle / "airpack.json").unlink()
    os.mkfifo(bundle / "airpack.json")
    assert problems_of(bundle, keys) == {("not-regular-file", "airpack.json"), ("unchecked", "airpack.json")}


def test_a_directory_where_a_file_was_signed(bundle: Path, keys) -> None:
    (bundle / tamper.TOKENIZER).unlink()
    (bundle / tamper.TOKENIZER).mkdir()
    (bundle / tamper.TOKENIZER / "x").write_text("x")
    assert problems_of(bundle, keys) == {("missing", tamper.TOKENIZER), ("extra", f"{tamper.TOKENIZER}/x")}


def test_missing_sums_and_unsigned(bundle: Path, keys) -> None:
    (bundle / "SHA256SUMS.sig").unlink()
    assert problems_of(bundle, keys) == {("unsigned", "SHA256SUMS.sig")}
    (bundle / "SHA256SUMS").unlink()
    assert problems_of(bundle, keys) == {("missing", "SHA256SUMS")}


def test_signed_manifest_that_disagrees_with_sums(bundle: Path, keys) -> None:
    """A file listed (and signed) in SHA256SUMS but absent from airpack.json's inventory."""
    (bundle / "model" / "new.json").write_text("{}")
    digest = hashlib.sha256(b"{}").hexdigest()
    _rewrite_sums(bundle, keys.ecdsa.private, lambda lines: [*lines, f"{digest}  model/new.json\n"])
    assert problems_of(bundle, keys) == {("manifest-mismatch", "model/new.json")}


def test_signed_but_unreadable_manifest(bundle: Path, keys) -> None:
    (bundle / "airpack.json").write_text('{"format": "airpack-bundle", "formatVersion": 99}')
    digest = hashlib.sha256((bundle / "airpack.json").read_bytes()).hexdigest()
    _rewrite_sums(bundle, keys.ecdsa.private,
                  lambda lines: [f"{digest}  airpack.json\n" if ln.endswith("  airpack.json\n") else ln
                                 for ln in lines])
    assert problems_of(bundle, keys) == {("bad-manifest", "airpack.json"), ("unchecked", "airpack.json")}


def test_manifest_not_listed(bundle: Path, keys) -> None:
    _rewrite_sums(bundle, keys.ecdsa.private, lambda lines: [ln for ln in lines if "airpack.json" not in ln])
    assert problems_of(bundle, keys) == {("missing", "airpack.json"), ("extra", "airpack.json"),
                                         ("unchecked", "airpack.json")}


def test_sums_listing_itself_is_unsafe(bundle: Path, keys) -> None:
    _rewrite_sums(bundle, keys.ecdsa.private, lambda lines: [*lines, f"{'0' * 64}  SHA256SUMS.sig\n"])
    assert problems_of(bundle, keys) == {("unsafe-path", "SHA256SUMS.sig")}


def test_check_integrity_is_the_unsigned_half(bundle: Path, ctx: tamper.Context) -> None:
    (bundle / "SHA256SUMS.sig").unlink()
    assert check_integrity(bundle).name == "test-model"
    tamper.extra_file(bundle, ctx)
    with pytest.raises(VerificationError, match="refusing to sign an inconsistent bundle: 1 problem") as info:
        check_integrity(bundle)
    assert [(p.kind, p.path) for p in info.value.problems] == [("extra", "model/pytorch_model.bin")]  # type: ignore[attr-defined]
    with pytest.raises(VerificationError, match="is this a bundle"):
        check_integrity(bundle / "model")


# ------------------------------------------------------------------------------------------- read-only


def _snapshot(root: Path) -> dict[str, tuple[int, int, int, int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            p = Path(dirpath) / name
            st = p.lstat()
            out[p.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return out


@pytest.fixture
def read_only(bundle: Path) -> Iterator[Path]:
    """The bundle made read-only (chmod -R a-w); permissions restored afterwards so tmp_path can be removed."""
    paths = [bundle, *bundle.rglob("*")]
    modes = {p: p.lstat().st_mode for p in paths}
    for p in paths:
        if not p.is_symlink():
            p.chmod(stat.S_IMODE(modes[p]) & ~0o222)
    yield bundle
    for p, mode in modes.items():
        if not p.is_symlink():
            p.chmod(stat.S_IMODE(mode))


def test_verify_never_writes(read_only: Path, keys) -> None:
    """As root the permissions alone prove nothing, so every entry's inode, size and times are compared too."""
    parent_before = sorted(p.name for p in read_only.parent.iterdir())
    before = _snapshot(read_only)
    verify_bundle(read_only, [keys.ecdsa.public])
    with pytest.raises(VerificationError):
        verify_bundle(read_only, [keys.foreign_ecdsa.public])
    assert _snapshot(read_only) == before
    assert sorted(p.name for p in read_only.parent.iterdir()) == parent_before


def test_verify_of_a_tampered_read_only_bundle_never_writes(bundle: Path, keys, ctx: tamper.Context,
                                                            read_only: Path) -> None:
    for p in (bundle, bundle / "model", bundle / tamper.CONFIG):
        p.chmod(0o755 if p.is_dir() else 0o644)
    tamper.flipped_byte(bundle, ctx)
    tamper.extra_file(bundle, ctx)
    for p in (bundle, bundle / "model", bundle / tamper.CONFIG, bundle / "model" / "pytorch_model.bin"):
        p.chmod(0o555 if p.is_dir() else 0o444)
    before = _snapshot(bundle)
    assert problems_of(bundle, keys) == {("modified", tamper.CONFIG), ("extra", "model/pytorch_model.bin")}
    assert _snapshot(bundle) == before


def _rewrite_manifest(bundle: Path, key, edit) -> None:
    """Edit airpack.json, put its new hash into SHA256SUMS and sign that with ``key`` (a trusted builder)."""
    doc = json.loads((bundle / "airpack.json").read_text())
    edit(doc)
    (bundle / "airpack.json").write_text(json.dumps(doc))
    new = hashlib.sha256((bundle / "airpack.json").read_bytes()).hexdigest()
    _rewrite_sums(bundle, key, lambda lines: [f"{new}  airpack.json\n" if ln.endswith("  airpack.json\n") else ln
                                              for ln in lines])


def _as_format_1(doc: dict, bundle: Path) -> None:
    doc["formatVersion"] = 1
    for f in doc["files"]:
        if "chunks" in f:
            size = f["chunks"]["size"]
            data = (bundle / f["path"]).read_bytes()
            f["chunks"] = {"size": size, "sha256": [hashlib.sha256(data[o:o + size]).hexdigest()
                                                    for o in range(0, len(data), size)]}


def test_a_format_1_bundle_is_refused_with_a_rebuild_hint(bundle: Path, keys) -> None:
    """Format 1 came from pre-release builds only (issue #15): it is refused, signed or not, and says why."""
    _rewrite_manifest(bundle, keys.ecdsa.private, lambda doc: _as_format_1(doc, bundle))
    with pytest.raises(VerificationError) as info:
        verify_bundle(bundle, [keys.ecdsa.public])
    assert any(p.kind == "bad-manifest" and "pre-release airpack; rebuild" in p.detail for p in info.value.problems)


def test_a_signed_chain_value_that_is_wrong_fails(bundle: Path, keys) -> None:
    """A builder bug (or a chain made for other bytes) cannot pass: the chunks must link up to the digest."""
    def edit(doc: dict) -> None:
        big = next(f for f in doc["files"] if f["path"] == tamper.BIG)
        big["chunks"]["chain"][1] = hashlib.sha256(b"other").hexdigest()
    _rewrite_manifest(bundle, keys.ecdsa.private, edit)
    assert problems_of(bundle, keys) == {("modified", tamper.BIG)}
