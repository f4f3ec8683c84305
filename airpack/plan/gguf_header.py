"""Read a GGUF file's header: metadata key/values and tensor infos, never the tensor data.

Why not ``gguf.GGUFReader`` (the gguf package, which airpack still uses for its type tables): it builds a numpy
view for every part of every field, tokenizer vocabularies included, so SmolLM2's 98 MB file (49,152 tokens)
took 3.8 s to open here and a 128k-token vocabulary with its merges takes many times that. The planner needs
the scalars, the small numeric arrays and each tensor's type and shape; this walks the header once with
``struct`` over bytes in memory, stepping over string arrays by their lengths (~0.1 s for SmolLM2).
Layout (little-endian, versions 2 and 3): magic, version u32, tensor count u64, kv count u64, the key/values
(key string, type u32, value), the tensor infos (name, n_dims u32, dims u64…, type u32, offset u64), then
padding to ``general.alignment`` (default 32) and the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from airpack.errors import SourceError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 8
# GGUFValueType: fixed-size scalars by struct format; 8 = string, 9 = array.
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


class Truncated(Exception):
    """The bytes end inside the header (``need``: at least this many bytes are required to go on)."""

    def __init__(self, need: int) -> None:
        super().__init__(f"the header continues past byte {need}")
        self.need = need


class Malformed(ValueError):
    """Not a GGUF header this reader understands."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int


@dataclass(frozen=True)
class Header:
    """``fields``: every key with its value (scalars as Python values, numeric arrays as tuples); string
    arrays are not kept: ``array_lengths`` has the length of every array. ``data_offset``: where data begins."""

    version: int
    fields: dict[str, Any]
    array_lengths: dict[str, int]
    tensors: tuple[TensorInfo, ...]
    data_offset: int


class _Cursor:
    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise Truncated(end)
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack(self.take(8))[0]
        return value

    def string(self) -> str:
        return bytes(self.take(self.u64())).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, end = self.buf, self.pos, len(self.buf)
        unpack = _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                raise Truncated(pos + 8)
            pos += 8 + unpack(buf, pos)[0]
        if pos > end:
            raise Truncated(pos)
        self.pos = pos


def parse_header(buf: bytes | memoryview, *, max_array_items: int = 4096) -> Header:
    """Parse the header at the start of ``buf``. ``Truncated`` when ``buf`` ends inside it, ``Malformed`` when
    it is not a (little-endian, version 2/3) GGUF header. Numeric arrays longer than ``max_array_items`` are
    stepped over like string arrays (only their length is kept)."""
    cur = _Cursor(buf)
    if bytes(cur.take(4)) != MAGIC:
        raise Malformed(f"magic {bytes(cur.buf[:4])!r}, expected b'GGUF'")
    version = cur.u32()
    if version not in VERSIONS:
        raise Malformed(f"GGUF version {version} (big-endian, or not supported: {VERSIONS})")
    tensor_count, kv_count = cur.u64(), cur.u64()
    if tensor_count > len(cur.buf) or kv_count > len(cur.buf):  # each needs several bytes: lies, not data
        raise Truncated(cur.pos + 8 * max(tensor_count, kv_count))
    fields: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(kv_count):
        key = cur.string()
        vtype = cur.u32()
        if vtype == _ARRAY:
            itype, count = cur.u32(), cur.u64()
            lengths[key] = count
            if itype == _STRING:
                cur.skip_strings(count)
            elif itype in _SCALAR:
                fmt = _SCALAR[itype]
                size = struct.calcsize(fmt)
                raw = cur.take(size * count)
                if count <= max_array_items:
                    fields[key] = tuple(v[0] for v in struct.iter_unpack(fmt, raw))
            else:
                raise Malformed(f"{key}: arrays of type {itype} are not supported")
        elif vtype == _STRING:
            fields[key] = cur.string()
        elif vtype in _SCALAR:
            fmt = _SCALAR[vtype]
            fields[key] = struct.unpack(fmt, cur.take(struct.calcsize(fmt)))[0]
        else:
            raise Malformed(f"{key}: unknown value type {vtype}")
    tensors = []
    for _ in range(tensor_count):
        name = cur.string()
        n_dims = cur.u32()
        if n_dims > MAX_DIMS:
            raise Malformed(f"tensor {name!r} has {n_dims} dimensions")
        dims = tuple(cur.u64() for _ in range(n_dims))
        ggml_type = cur.u32()
        cur.u64()  # offset within the data region
        tensors.append(TensorInfo(name, dims, ggml_type))
    alignment = fields.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise Malformed(f"general.alignment {alignment!r} is not a power of two")
    data_offset = -(-cur.pos // alignment) * alignment
    return Header(version, fields, lengths, tuple(tensors), data_offset)


def gguf() -> ModuleType:
    """The gguf package, for its type tables. It (and numpy with it) is a build-side dependency
    (``airpack[build]``): an airpack installed from a bundle's ``tool/`` plans a GGUF model only once it is added."""
    try:
        import gguf as module  # noqa: PLC0415 - numpy comes with it: loaded only for a GGUF model
    except ModuleNotFoundError:
        raise SourceError("reading a GGUF model's tensor types needs the gguf package, which this airpack lacks",
                          hint="pip install 'airpack[build]', or plan on the connected side (the bundle "
                               "records its plan: airpack inspect)") from None
    return module
