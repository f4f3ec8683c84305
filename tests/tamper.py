"""Tampered bundles as named test assets: one function per attack, each taking a good signed bundle folder and
tampering it in place, and returning what ``airpack verify`` must report and whether the plain
``openssl`` + ``sha256sum --strict -c`` recipe notices.

The bundle is one built from ``tests/conftest.py``'s ``small_model`` with a small chunk size, so it has
``model/model.safetensors`` (several chunks), ``model/config.json``, ``model/tokenizer.json``,
``airpack.json``, ``SHA256SUMS`` and ``SHA256SUMS.sig``.

What the recipe cannot see (``recipe_sees=False``), and why airpack must:
- an extra file: ``sha256sum -c`` only checks the files that are listed;
- a symlink to an identical copy: ``sha256sum`` follows links, so an installer that follows them too could be
  pointed anywhere later;
- ``..`` and absolute paths, and duplicate entries, in a SHA256SUMS that the trusted key signed (a confused or
  compromised build): ``sha256sum`` happily checks a file outside the bundle, or the same file twice.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airpack.bundle_layout import MANIFEST, SIGNATURE, SUMS
from airpack.signing import PrivateKey, sign_bytes

BIG = "model/model.safetensors"
CONFIG = "model/config.json"
TOKENIZER = "model/tokenizer.json"


@dataclass(frozen=True)
class Context:
    """What a tampering may use: the trusted signing key, a foreign one, and a scratch folder outside."""

    trusted: PrivateKey
    foreign: PrivateKey
    outside: Path
    chunk_size: int


@dataclass(frozen=True)
class Tampered:
    """``problems``: the exact (kind, path) pairs ``verify`` must report. ``recipe_sees``: the openssl +
    sha256sum recipe fails on this bundle."""

    problems: frozenset[tuple[str, str]]
    recipe_sees: bool


def _expect(*problems: tuple[str, str], recipe_sees: bool) -> Tampered:
    return Tampered(frozenset(problems), recipe_sees)


def resign(bundle: Path, key: PrivateKey) -> None:
    """Sign an edited SHA256SUMS as an airpack from before ``signatures/`` would: without them (an absent
    attestation is reported, not refused; a stale one is a problem of its own, tested in test_attest.py)."""
    shutil.rmtree(bundle / "signatures", ignore_errors=True)
    (bundle / SIGNATURE).write_bytes(sign_bytes(key, (bundle / SUMS).read_bytes()))


def _append_sums(bundle: Path, line: str) -> None:
    with (bundle / SUMS).open("a") as fh:
        fh.write(line)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flipped_byte(bundle: Path, ctx: Context) -> Tampered:
    """One bit of a small file flipped."""
    path = bundle / CONFIG
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    return _expect(("modified", CONFIG), recipe_sees=True)


def truncated(bundle: Path, ctx: Context) -> Tampered:
    """The weights file cut short (an interrupted copy onto the transfer medium)."""
    path = bundle / BIG
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - 4096)
    return _expect(("modified", BIG), recipe_sees=True)


def extra_file(bundle: Path, ctx: Context) -> Tampered:
    """A file nobody signed, next to the weights (a pickle that a loader might pick up)."""
    (bundle / "model" / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return _expect(("extra", "model/pytorch_model.bin"), recipe_sees=False)


def missing_file(bundle: Path, ctx: Context) -> Tampered:
    (bundle / TOKENIZER).unlink()
    return _expect(("missing", TOKENIZER), recipe_sees=True)


def swapped_files(bundle: Path, ctx: Context) -> Tampered:
    """Two model files' contents swapped: every byte is signed, just not at that path."""
    a, b = bundle / CONFIG, bundle / TOKENIZER
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    return _expect(("modified", CONFIG), ("modified", TOKENIZER), recipe_sees=True)


def edited_manifest(bundle: Path, ctx: Context) -> Tampered:
    """``airpack.json`` edited (the bundle renamed): no signed size bounds the other files, so they are not
    hashed (one ``unchecked`` problem says how many)."""
    path = bundle / MANIFEST
    path.write_bytes(path.read_bytes().replace(b'"name": "test-model"', b'"name": "evil-model"'))
    return _expect(("modified", MANIFEST), ("unchecked", MANIFEST), recipe_sees=True)


def rehashed_unsigned_sums(bundle: Path, ctx: Context) -> Tampered:
    """A file changed and SHA256SUMS rewritten to match it, the old signature kept."""
    path = bundle / CONFIG
    path.write_bytes(path.read_bytes() + b"\n")
    sums = (bundle / SUMS).read_text().splitlines(keepends=True)
    new = [f"{_sha256(path)}  {CONFIG}\n" if line.endswith(f"  {CONFIG}\n") else line for line in sums]
    (bundle / SUMS).write_text("".join(new))
    return _expect(("bad-signature", SIGNATURE), recipe_sees=True)


def foreign_key(bundle: Path, ctx: Context) -> Tampered:
    """Re-signed by a key the verifier does not trust."""
    resign(bundle, ctx.foreign)
    return _expect(("bad-signature", SIGNATURE), recipe_sees=True)


def garbage_signature(bundle: Path, ctx: Context) -> Tampered:
    """Not base64 at all."""
    (bundle / SIGNATURE).write_bytes(b"this is *not* base64!\n")
    return _expect(("bad-signature", SIGNATURE), recipe_sees=True)


def wrong_signature_bytes(bundle: Path, ctx: Context) -> Tampered:
    """Valid base64 of the right length, wrong bytes."""
    raw = base64.b64decode((bundle / SIGNATURE).read_bytes())
    (bundle / SIGNATURE).write_bytes(base64.b64encode(bytes(b ^ 0x5A for b in raw)) + b"\n")
    return _expect(("bad-signature", SIGNATURE), recipe_sees=True)


def missing_signature(bundle: Path, ctx: Context) -> Tampered:
    (bundle / SIGNATURE).unlink()
    return _expect(("unsigned", SIGNATURE), recipe_sees=True)


def symlink(bundle: Path, ctx: Context) -> Tampered:
    """A signed file replaced by a symlink to an identical copy outside the bundle."""
    copy = ctx.outside / "config-copy.json"
    shutil.copyfile(bundle / CONFIG, copy)
    (bundle / CONFIG).unlink()
    (bundle / CONFIG).symlink_to(copy)
    return _expect(("symlink", CONFIG), recipe_sees=False)


def dotdot_path_signed(bundle: Path, ctx: Context) -> Tampered:
    """SHA256SUMS lists ``../outside.txt`` (whose hash matches), and the trusted key signed it."""
    target = bundle.parent / "outside.txt"
    target.write_bytes(b"outside the bundle\n")
    _append_sums(bundle, f"{_sha256(target)}  ../outside.txt\n")
    resign(bundle, ctx.trusted)
    return _expect(("unsafe-path", "../outside.txt"), recipe_sees=False)


def absolute_path_signed(bundle: Path, ctx: Context) -> Tampered:
    """SHA256SUMS lists an absolute path (whose hash matches), and the trusted key signed it."""
    target = ctx.outside / "absolute.txt"
    target.write_bytes(b"an absolute path\n")
    _append_sums(bundle, f"{_sha256(target)}  {target.resolve()}\n")
    resign(bundle, ctx.trusted)
    return _expect(("unsafe-path", str(target.resolve())), recipe_sees=False)


def duplicate_entry_signed(bundle: Path, ctx: Context) -> Tampered:
    """A file listed twice in SHA256SUMS, and the trusted key signed it."""
    _append_sums(bundle, f"{_sha256(bundle / CONFIG)}  {CONFIG}\n")
    resign(bundle, ctx.trusted)
    return _expect(("duplicate-entry", CONFIG), recipe_sees=False)


def malformed_sums_signed(bundle: Path, ctx: Context) -> Tampered:
    """A line that is not '<64 hex>  <path>' (one space, BSD style), signed by the trusted key."""
    _append_sums(bundle, f"{_sha256(bundle / CONFIG)} {CONFIG}\n")
    resign(bundle, ctx.trusted)
    line = len((bundle / SUMS).read_text().splitlines())
    return _expect(("malformed-sums", f"{SUMS}:{line}"), recipe_sees=True)


def chunk_changed(bundle: Path, ctx: Context) -> Tampered:
    """One byte changed in the middle of a later chunk of the large file (size unchanged)."""
    path = bundle / BIG
    offset = 2 * ctx.chunk_size + ctx.chunk_size // 2
    assert path.stat().st_size > offset + 1, "the large file must span at least three chunks"
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return _expect(("modified", BIG), recipe_sees=True)


CASES: dict[str, Callable[[Path, Context], Tampered]] = {
    f.__name__: f for f in (
        flipped_byte, truncated, extra_file, missing_file, swapped_files, edited_manifest, rehashed_unsigned_sums,
        foreign_key, garbage_signature, wrong_signature_bytes, missing_signature, symlink, dotdot_path_signed,
        absolute_path_signed, duplicate_entry_signed, malformed_sums_signed, chunk_changed,
    )
}
