"""airpack's GGUF header reader against gguf.GGUFReader (the reference) on real files, and on broken headers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from plan_helpers import find_smollm2_gguf, write_tiny_gguf

from airpack.errors import SourceError
from airpack.plan import read_gguf
from airpack.plan.gguf_header import Malformed, Truncated, parse_header


def _reference(path: Path) -> tuple[dict[str, object], dict[str, int], list[tuple[str, tuple[int, ...], int]], int]:
    reader = GGUFReader(path)
    fields, lengths = {}, {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if fld.types[0] == GGUFValueType.ARRAY:
            lengths[key] = len(fld.data)
            if fld.types[-1] != GGUFValueType.STRING and len(fld.data) <= 4096:
                fields[key] = tuple(fld.contents())
        else:
            fields[key] = fld.contents()
    # GGUFReader lists dims innermost-first, as stored
    tensors = [(t.name, tuple(int(d) for d in t.field.parts[3]), int(t.tensor_type)) for t in reader.tensors]
    return fields, lengths, tensors, int(reader.data_offset)


def _odd_gguf(path: Path) -> Path:
    """Every value type, a string array, a long numeric array, alignment 64 and a Q8_0 tensor."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -5)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_float32("t.f32", 1e-5)
    writer.add_uint64("t.u64", 2**63)
    writer.add_int64("t.i64", -(2**62))
    writer.add_float64("t.f64", 0.1)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "héllo")
    writer.add_array("t.strings", ["a", "bb", "", "ünï"])
    writer.add_array("t.short", [1, 2, 3])
    writer.add_array("t.long", list(range(5000)))
    writer.add_custom_alignment(64)
    writer.add_tensor("w", np.zeros((4, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("gguf-header")
    return [find_smollm2_gguf(), write_tiny_gguf(root / "tiny.gguf"), _odd_gguf(root / "odd.gguf")]


def test_same_fields_tensors_and_data_offset_as_gguf_reader(files: list[Path]) -> None:
    for path in files:
        header = parse_header(path.read_bytes())
        fields, lengths, tensors, data_offset = _reference(path)
        assert header.fields == fields, path.name
        assert header.array_lengths == lengths
        assert [(t.name, t.dims, t.ggml_type) for t in header.tensors] == tensors
        assert header.data_offset == data_offset


def test_every_value_type(files: list[Path]) -> None:
    f = parse_header(files[2].read_bytes()).fields
    assert (f["t.u8"], f["t.i8"], f["t.u16"], f["t.i16"]) == (200, -5, 60000, -30000)
    assert (f["t.u32"], f["t.i32"], f["t.u64"], f["t.i64"]) == (4_000_000_000, -2_000_000_000, 2**63, -(2**62))
    assert f["t.f32"] == pytest.approx(1e-5) and f["t.f64"] == 0.1 and f["t.bool"] is True
    assert f["t.str"] == "héllo" and f["t.short"] == (1, 2, 3)
    assert "t.strings" not in f and "t.long" not in f  # kept only as lengths
    assert parse_header(files[2].read_bytes()).data_offset % 64 == 0


def test_every_prefix_shorter_than_the_header_is_truncated_never_misread(files: list[Path]) -> None:
    raw = files[2].read_bytes()
    end = parse_header(raw).data_offset
    full = parse_header(raw)
    for cut in range(0, end, 7):
        try:
            got = parse_header(raw[:cut])
        except (Truncated, Malformed):
            continue
        assert got == full  # only a cut inside the padding after the tensor infos parses, and then the same
    real = files[0].read_bytes()[:3_000_000]
    with pytest.raises(Truncated) as exc:
        parse_header(real[:500_000])  # inside SmolLM2's tokenizer arrays
    assert exc.value.need > 500_000


def _header(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", vtype) + payload


@pytest.mark.parametrize(("raw", "error", "match"), [
    (b"GGML" + bytes(20), Malformed, "magic"),
    (_header(version=1), Malformed, "version 1"),
    (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), Malformed, "version"),  # big-endian
    (_header(kvs=2**60), Truncated, None),  # a count no file could hold
    (_header(kvs=1) + _kv("k", 42, b""), Malformed, "unknown value type 42"),
    (_header(kvs=1) + _kv("k", 9, struct.pack("<IQ", 9, 1)), Malformed, "arrays of type 9"),
    (_header(kvs=1) + _kv("general.alignment", 4, struct.pack("<I", 48)), Malformed, "power of two"),
    (_header(tensors=1) + struct.pack("<Q", 1) + b"t" + struct.pack("<I", 99), Malformed, "99 dimensions"),
    (_header(kvs=1) + _kv("k", 8, struct.pack("<Q", 2**40)), Truncated, None),  # a string longer than the file
])
def test_broken_headers(raw: bytes, error: type[Exception], match: str | None) -> None:
    with pytest.raises(error, match=match):
        parse_header(raw)


def test_read_gguf_reports_a_file_that_ends_inside_its_header(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(find_smollm2_gguf().read_bytes()[:1_000_000])
    with pytest.raises(SourceError, match="ends inside its header"):
        read_gguf(cut)
    odd = tmp_path / "odd.gguf"
    odd.write_bytes(_header(kvs=1) + _kv("k", 42, b""))
    with pytest.raises(SourceError, match="cannot parse GGUF metadata: k: unknown value type 42"):
        read_gguf(odd)


def test_read_gguf_does_not_read_a_big_file_for_a_corrupt_count(tmp_path: Path) -> None:
    """A header whose counts claim more than any header holds is refused before the weights are read."""
    big = tmp_path / "big.gguf"
    with big.open("wb") as fh:
        fh.write(_header(kvs=2**40))
        fh.truncate(300 * 1024 * 1024)  # sparse: larger than the largest header airpack reads
    with pytest.raises(SourceError, match="claims to run past"):
        read_gguf(big)
