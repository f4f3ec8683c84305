"""The tool a bundle carries so that airpack itself crosses the air gap: ``tool/`` holds airpack's own wheel and
every wheel it needs on the far side (binary only, for the bundle's platform and CPython 3.11-3.13), plus
``tool/install.sh``, which checks the signature and every ``tool/`` file before any Python runs and installs
airpack into a fresh venv with ``pip install --no-index`` (docs/bundle-format.md, "The tool").

This module holds the plain data (what the lock pins) and the platform tags; fetching wheels lives in
``airpack.tool.wheels`` (connected side only), writing ``tool/`` in ``airpack.tool.write`` and the far side's
view of the host's Python in ``airpack.tool.host``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOOL_DIR = "tool"
WHEELS_DIR = "tool/wheels"
INSTALL_SCRIPT = "tool/install.sh"
TOOL_CONF = "tool/tool.conf"
PYTHONS = ("3.11", "3.12", "3.13")
ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
GLIBC_MAX_MINOR = 28  # runnable on glibc 2.28 and newer (RHEL 8)


def platform_tags(platform: str) -> tuple[str, ...]:
    """Every wheel platform tag a glibc 2.28 host of ``platform`` runs, for ``pip download --platform``.

    pip does not widen a given ``--platform`` by itself: a wheel tagged only ``manylinux2014_<arch>`` (cffi) or
    only ``manylinux_2_28_<arch>`` is found only when that exact tag is listed.
    """
    arch = ARCH[platform]
    first = 5 if arch == "x86_64" else 17  # manylinux for aarch64 starts at glibc 2.17
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MAX_MINOR, first - 1, -1)]
    tags.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tuple(tags)


@dataclass(frozen=True)
class WheelSource:
    """Where ``pip download`` looks: pip's own configuration when both are empty (the default), else an index
    URL and/or local folders of wheels (``find_links`` alone means ``--no-index``)."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()

    def pip_args(self) -> list[str]:
        out: list[str] = []
        if self.index_url:
            out += ["--index-url", self.index_url]
        elif self.find_links:
            out.append("--no-index")
        for f in self.find_links:
            out += ["--find-links", f]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"indexUrl": self.index_url, "findLinks": list(self.find_links)}


@dataclass(frozen=True)
class LockedWheel:
    """One wheel of the tool: file name, size and sha256."""

    filename: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedWheel:
        name = str(d["filename"])
        if "/" in name or not name.endswith(".whl") or name.startswith("."):
            raise ValueError(f"tool wheel {name!r} is not a wheel file name")
        return cls(name, int(d["size"]), str(d["sha256"]))


@dataclass(frozen=True)
class LockedTool:
    """The tool part of the lock: airpack's version, the platform and Pythons, and every wheel pinned."""

    airpack: str
    platform: str
    pythons: tuple[str, ...]
    wheels: tuple[LockedWheel, ...]

    @property
    def total_size(self) -> int:
        return sum(w.size for w in self.wheels)

    def to_dict(self) -> dict[str, Any]:
        return {"airpack": self.airpack, "platform": self.platform, "pythons": list(self.pythons),
                "wheels": [w.to_dict() for w in self.wheels]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedTool:
        platform = str(d["platform"])
        if platform not in ARCH:
            raise ValueError(f"tool platform {platform!r} is not one of {', '.join(ARCH)}")
        return cls(str(d["airpack"]), platform, tuple(str(p) for p in d["pythons"]),
                   tuple(LockedWheel.from_dict(w) for w in d["wheels"]))

    def conf(self) -> bytes:
        """``tool/tool.conf``: what ``install.sh`` reads (after checking it against the signed list)."""
        return (f"# airpack tool: read by tool/install.sh\nairpack={self.airpack}\nplatform={self.platform}\n"
                f"pythons={' '.join(self.pythons)}\n").encode()
