"""SHA-256 whose internal state can be read at a chunk boundary and resumed from there.

A whole-file SHA-256 is sequential, so a verifier holding only that digest checks a 40 GB file on one core.
Signing the *chaining value* (the eight 32-bit words H0…H7 of FIPS 180-4) at every chunk boundary lets each
chunk be checked on its own core: start from the signed value before the chunk, hash the chunk, and compare
with the signed value after it; the last chunk is finalised and compared with the file's SHA-256 itself. All
chunks matching proves the file's standard SHA-256, and the builder hashes every byte once (signing separate
per-chunk digests, as format 1 did, cost a second SHA-256 pass over every large file).

Written by hand because no maintained Python library exposes this: ``hashlib`` and ``cryptography`` hide the
state, and pure-C packages lack the SHA-NI/AVX2 code that makes OpenSSL run at ~1.3 GB/s per core. This binds,
through ``ctypes``, OpenSSL's long-stable ``SHA256_Init``/``SHA256_Update``/``SHA256_Final`` and its public
``SHA256_CTX`` struct, from the very libcrypto that Python's ``hashlib`` uses. Where that library or those
symbols are missing, ``AVAILABLE`` is False and callers fall back to ``hashlib`` on whole files (correct, one
core per file). ``ctypes`` releases the GIL during each call, so hashers on several threads use several cores.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from typing import Any

Buffer = bytes | bytearray | memoryview

BLOCK = 64  # SHA-256 block: a chaining value exists only at a multiple of it


class _Ctx(ctypes.Structure):
    # openssl/sha.h: typedef struct SHA256state_st { SHA_LONG h[8]; SHA_LONG Nl, Nh; SHA_LONG data[16];
    # unsigned int num, md_len; } SHA256_CTX;  (unchanged since OpenSSL 0.9.8)
    _fields_ = [("h", ctypes.c_uint32 * 8), ("Nl", ctypes.c_uint32), ("Nh", ctypes.c_uint32),
                ("data", ctypes.c_uint32 * 16), ("num", ctypes.c_uint), ("md_len", ctypes.c_uint)]


def _load() -> Any:
    """libcrypto's SHA-256 functions, preferring the copy ``hashlib`` is linked against (dlsym on the
    ``_hashlib`` extension searches its dependencies), else the system's; None when neither has them."""
    candidates: list[str] = []
    try:
        import _hashlib  # noqa: PLC0415 - only to find the libcrypto Python itself uses

        candidates.append(_hashlib.__file__)
    except (ImportError, AttributeError):  # pragma: no cover - a Python built without OpenSSL
        pass
    found = ctypes.util.find_library("crypto")
    if found:
        candidates.append(found)
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            init, update, final = lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final
        except (OSError, AttributeError):
            continue
        init.argtypes, init.restype = [ctypes.POINTER(_Ctx)], ctypes.c_int
        update.argtypes, update.restype = [ctypes.POINTER(_Ctx), ctypes.c_void_p, ctypes.c_size_t], ctypes.c_int
        final.argtypes, final.restype = [ctypes.c_char_p, ctypes.POINTER(_Ctx)], ctypes.c_int
        if _selftest(init, update, final):
            return init, update, final
    return None


def _selftest(init: Any, update: Any, final: Any) -> bool:
    """Refuse a library whose struct layout is not the one above (FIPS 180-4 test vector "abc")."""
    ctx = _Ctx()
    out = ctypes.create_string_buffer(32)
    msg = b"abc"
    if not (init(ctypes.byref(ctx)) and update(ctypes.byref(ctx), msg, len(msg))):
        return False
    if (ctx.Nl, ctx.Nh, ctx.num, ctx.md_len) != (24, 0, 3, 32):
        return False
    return bool(final(out, ctypes.byref(ctx))) and out.raw.hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


_FUNCS = _load()
AVAILABLE = _FUNCS is not None


class Sha256State:
    """A SHA-256 computation that can report its chaining value and be resumed from one.

    ``Sha256State()`` starts at the standard initial value; ``Sha256State(chain_hex, offset)`` resumes after
    ``offset`` bytes (a multiple of 64) whose chaining value was ``chain_hex``.
    """

    def __init__(self, chain_hex: str | None = None, offset: int = 0) -> None:
        if _FUNCS is None:
            raise RuntimeError("SHA-256 state access needs OpenSSL's libcrypto")
        self._init, self._update, self._final = _FUNCS
        self._ctx = _Ctx()
        self._init(ctypes.byref(self._ctx))
        self._count = 0
        if chain_hex is not None:
            if offset % BLOCK:
                raise ValueError("a SHA-256 state can only be resumed at a multiple of 64 bytes")
            self._ctx.h[:] = struct.unpack(">8I", bytes.fromhex(chain_hex))
            bits = offset * 8
            self._ctx.Nl, self._ctx.Nh = bits & 0xFFFFFFFF, bits >> 32
            self._count = offset

    def update(self, data: Buffer) -> None:
        """Hash ``data`` (bytes are passed without a copy; so are writable buffers such as a bytearray)."""
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if not n:
            return
        if isinstance(data, bytes):
            self._update(ctypes.byref(self._ctx), data, n)
        elif isinstance(data, memoryview) and data.readonly:
            self._update(ctypes.byref(self._ctx), data.tobytes(), n)  # rare: callers pass bytes or bytearrays
        else:
            view = (ctypes.c_char * n).from_buffer(data)
            self._update(ctypes.byref(self._ctx), view, n)
        self._count += n

    def update_slice(self, data: bytes, start: int, end: int) -> None:
        """Hash ``data[start:end]`` without copying it."""
        if not 0 <= start <= end <= len(data):
            raise ValueError("slice out of range")
        if end > start:
            base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
            self._update(ctypes.byref(self._ctx), base + start, end - start)
            self._count += end - start

    @property
    def count(self) -> int:
        """Bytes hashed so far, resumed offset included."""
        return self._count

    def chain(self) -> str:
        """The chaining value H0…H7 as 64 hex digits, big-endian (only at a 64-byte boundary)."""
        if self._count % BLOCK:
            raise ValueError("the SHA-256 state is a chaining value only at a multiple of 64 bytes")
        return struct.pack(">8I", *self._ctx.h).hex()

    def hexdigest(self) -> str:
        """Finish the hash (the object cannot be updated afterwards)."""
        out = ctypes.create_string_buffer(32)
        self._final(out, ctypes.byref(self._ctx))
        return out.raw.hex()
