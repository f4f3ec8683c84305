"""The bundle's on-disk layout, in one place: file names, the ``SHA256SUMS`` format and ``airpack.json``. (The OCI
image layout inside the bundle's ``images/`` is ``airpack.oci.layout``.)

See ``docs/bundle-format.md`` for the documented format (version ``FORMAT_VERSION``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

FORMAT = "airpack-bundle"
FORMAT_VERSION = 2
MANIFEST = "airpack.json"
SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
MODEL_DIR = "model"
IMAGES_DIR = "images"
DEPLOY_DIR = "deploy"
# Signatures in the formats other tools read (docs/bundle-format.md#attestations): each signs over the model
# files or over SHA256SUMS itself, so they cannot be listed in SHA256SUMS; verify checks each with the key.
MODEL_SIG = "signatures/model.sig"
PROVENANCE = "signatures/provenance.intoto.jsonl"
ATTESTATIONS = (MODEL_SIG, PROVENANCE)
# Files that are not listed in SHA256SUMS: the list itself and its signatures.
UNLISTED = (SUMS, SIGNATURE, *ATTESTATIONS)
MAX_SUMS_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

_SUMS_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Entry:
    """One file of the bundle: its path, size, whole-file sha256, kind and, for a large file, the SHA-256
    chaining value after each chunk but the last (``chain``)."""

    path: str
    size: int
    sha256: str
    kind: str
    chunk_size: int = 0
    chain: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": self.kind}
        if self.chain:
            out["chunks"] = {"size": self.chunk_size, "chain": list(self.chain)}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        chunks = d.get("chunks") or {}
        entry = cls(
            path=str(d["path"]), size=int(d["size"]), sha256=str(d["sha256"]), kind=str(d["kind"]),
            chunk_size=int(chunks.get("size", 0)), chain=tuple(str(c) for c in chunks.get("chain", ())),
        )
        if entry.size < 0 or not _HEX64.match(entry.sha256):
            raise ValueError(f"bad inventory entry for {entry.path!r}")
        count = -(-entry.size // entry.chunk_size) if entry.chunk_size > 0 else -1
        if entry.chain and (count - 1 != len(entry.chain) or not all(_HEX64.match(c) for c in entry.chain)
                            or entry.chunk_size % 64):
            raise ValueError(f"chunk list of {entry.path!r} does not cover its {entry.size} bytes")
        return entry


@dataclass(frozen=True)
class Manifest:
    """``airpack.json``: what the bundle is, how it was made, and an inventory of every other file.

    Unknown top-level keys are kept (``extra``) so a newer minor format round-trips.
    """

    name: str
    version: str
    created: str
    airpack_version: str
    spec: dict[str, Any]
    lock: dict[str, Any]
    files: tuple[Entry, ...]
    images: tuple[dict[str, Any], ...] = ()
    deploy: tuple[dict[str, Any], ...] = ()
    plan: dict[str, Any] | None = None
    checks: tuple[dict[str, Any], ...] = ()
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({
            "format": FORMAT, "formatVersion": self.format_version, "name": self.name, "version": self.version,
            "created": self.created, "airpackVersion": self.airpack_version, "spec": self.spec,
            "lock": self.lock, "files": [e.to_dict() for e in self.files], "images": list(self.images),
            "deploy": list(self.deploy), "plan": self.plan, "checks": list(self.checks),
        })
        return out

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse; raises ValueError (or KeyError/TypeError) on anything malformed."""
        d = json.loads(data)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("not an airpack bundle manifest")
        version = d.get("formatVersion")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"bundle format version {version!r} is newer than this airpack reads "
                             f"({FORMAT_VERSION}); upgrade airpack")
        if version < FORMAT_VERSION:  # format 1 was written by pre-release builds only: nothing to migrate
            raise ValueError(f"bundle format version {version} was written by a pre-release airpack; rebuild "
                             "the bundle with this one")
        known = {"format", "formatVersion", "name", "version", "created", "airpackVersion", "spec", "lock",
                 "files", "images", "deploy", "plan", "checks"}
        return cls(
            name=str(d["name"]), version=str(d["version"]), created=str(d["created"]),
            airpack_version=str(d["airpackVersion"]), spec=dict(d["spec"]), lock=dict(d["lock"]),
            files=tuple(Entry.from_dict(e) for e in d["files"]), images=tuple(d.get("images") or ()),
            deploy=tuple(d.get("deploy") or ()), plan=d.get("plan"), checks=tuple(d.get("checks") or ()),
            format_version=version, extra={k: v for k, v in d.items() if k not in known},
        )


def render_sums(entries: dict[str, str]) -> bytes:
    """GNU ``sha256sum`` format, two spaces, sorted bytewise by UTF-8 path."""
    lines = [f"{entries[p]}  {p}\n" for p in sorted(entries, key=lambda p: p.encode())]
    return "".join(lines).encode()


@dataclass(frozen=True)
class SumsLine:
    """A parsed ``SHA256SUMS`` line (``line`` is 1-based)."""

    line: int
    sha256: str
    path: str


def parse_sums(data: bytes) -> tuple[list[SumsLine], list[tuple[int, str]]]:
    """Parse strictly; return the lines and ``(line number, reason)`` for every malformed one."""
    ok: list[SumsLine] = []
    bad: list[tuple[int, str]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [(0, "not UTF-8")]
    if text and not text.endswith("\n"):
        bad.append((text.count("\n") + 1, "last line is not terminated (truncated file?)"))
    for n, line in enumerate(text.splitlines(), 1):
        m = _SUMS_LINE.match(line)
        if not m:
            bad.append((n, "not '<64 hex>  <path>'"))
            continue
        ok.append(SumsLine(n, m.group(1), m.group(2)))
    return ok, bad
