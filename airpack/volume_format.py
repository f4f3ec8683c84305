"""The volume file, ``airpack-volume.json``: which pieces of which bundle files one volume holds, and for a delta
split (``split --base``) which files the far side takes from the bundle it already has.

Only data and its (de)serialisation live here, so that ``volumes`` (split, check, join) and ``delta`` (the base
bundle) share it without importing each other. The file is not signed: every piece, and every file taken from a
base, is proved against the signed root of the new bundle instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from airpack.bundle_layout import MANIFEST, SIGNATURE, SUMS
from airpack.errors import UsageError, VerificationError

VOLUME_FILE = "airpack-volume.json"
VOLUME_FORMAT = "airpack-volume"
VOLUME_FORMAT_VERSION = 1
DELTA_FORMAT_VERSION = 2  # a volume of a delta split: version 1 readers refuse it rather than half-join it
ROOT_FILES = (SUMS, SIGNATURE, MANIFEST)
MAX_VOLUME_FILE_BYTES = 64 * 1024 * 1024
PART_NAME = re.compile(r"^(.+)\.part(\d{3,})$")


@dataclass(frozen=True)
class Piece:
    """Bytes ``[offset, offset+length)`` of the bundle file ``file`` (``size`` bytes), stored as ``name``."""

    file: str
    offset: int
    length: int
    size: int
    name: str

    @property
    def whole(self) -> bool:
        return self.offset == 0 and self.length == self.size

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "offset": self.offset, "length": self.length, "size": self.size,
                "name": self.name}


@dataclass(frozen=True)
class BaseRef:
    """What a delta split leaves to the base bundle: the SHA-256 of the base's ``SHA256SUMS`` (which build it was
    made against) and the files of the new bundle, by their new paths, that the base holds (found by content)."""

    sums_sha256: str
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"sums": self.sums_sha256, "files": list(self.files)}

    def json_bytes(self) -> int:
        """About how much room this takes in every volume file (planning reserves it)."""
        return len(json.dumps(self.to_dict(), indent=1)) + 64


@dataclass(frozen=True)
class Volume:
    """One volume: its number, how many there are, the pieces it holds and, for a delta, its base."""

    index: int
    count: int
    name: str
    version: str
    sums_sha256: str
    pieces: tuple[Piece, ...]
    base: BaseRef | None = None

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.version}.vol{self.index}of{self.count}"

    def to_json(self) -> bytes:
        doc = {"format": VOLUME_FORMAT, "formatVersion": DELTA_FORMAT_VERSION if self.base else VOLUME_FORMAT_VERSION,
               "bundle": {"name": self.name, "version": self.version, "sums": self.sums_sha256},
               "volume": self.index, "count": self.count, "pieces": [p.to_dict() for p in self.pieces]}
        if self.base:
            doc["base"] = self.base.to_dict()
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Volume:
        try:
            doc = json.loads(data)
            if doc.get("format") != VOLUME_FORMAT:
                raise ValueError("not an airpack volume")
            version = doc.get("formatVersion")
            if version not in (VOLUME_FORMAT_VERSION, DELTA_FORMAT_VERSION):
                raise ValueError(f"volume format {version!r} is not one this airpack reads")
            if ("base" in doc) != (version == DELTA_FORMAT_VERSION):
                raise ValueError(f"format {version} and a base {'missing' if 'base' not in doc else 'given'}")
            pieces = tuple(Piece(str(p["file"]), int(p["offset"]), int(p["length"]), int(p["size"]),
                                 str(p["name"])) for p in doc["pieces"])
            base = BaseRef(str(doc["base"]["sums"]), tuple(str(f) for f in doc["base"]["files"])) \
                if "base" in doc else None
            bundle = doc["bundle"]
            return cls(int(doc["volume"]), int(doc["count"]), str(bundle["name"]), str(bundle["version"]),
                       str(bundle["sums"]), pieces, base)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VerificationError(f"{where}: unreadable {VOLUME_FILE}: {exc}") from None

    def base_problem(self, listed: dict[str, str]) -> str | None:
        """Why the files this volume leaves to its base are not a sound claim on the signed ``listed`` files."""
        if self.base is None:
            return None
        carried = {p.file for p in self.pieces}
        if len(set(self.base.files)) != len(self.base.files):
            return "it names a base file twice"
        for rel in self.base.files:
            if rel not in listed or rel == MANIFEST:
                return f"it takes {rel!r} from the base, a file the bundle does not list"
            if rel in carried:
                return f"it takes {rel!r} from the base and also carries it"
        return None


def parse_size(text: str) -> int:
    """``32GB`` (10^9, as disks are sold), ``4GiB`` (2^30), ``700M``, ``4095MiB`` or plain bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise UsageError(f"size {text!r} is not a size", hint="e.g. 32GB, 4GiB, 700MB or a number of bytes")
    number, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    power = "KMGT".find(unit) + 1 if unit else 0
    return int(number * (1024 if binary else 1000) ** power)
