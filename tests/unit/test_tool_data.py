"""The tool's data (issue 13): platform tags for a glibc 2.28 host, the lock's tool section, ``target.python``,
and doctor's verdict on the host's Python. The tool built, installed and refused for real: tests/integration/
test_tool.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from airpack.errors import SpecError
from airpack.lock import Lock, LockedModel
from airpack.spec import Spec, parse_spec
from airpack.tool import LockedTool, LockedWheel, WheelSource, platform_tags
from airpack.tool.host import HostPython, python_verdict


@pytest.mark.parametrize(("platform", "arch", "other"), [("linux/amd64", "x86_64", "aarch64"),
                                                         ("linux/arm64", "aarch64", "x86_64")])
def test_platform_tags_cover_glibc_2_17_to_2_28(platform: str, arch: str, other: str) -> None:
    tags = platform_tags(platform)
    assert f"manylinux2014_{arch}" in tags  # cffi is tagged only so
    assert {f"manylinux_2_{m}_{arch}" for m in range(17, 29)} <= set(tags)
    assert not [t for t in tags if "2_29" in t or "2_34" in t or other in t]
    assert ("manylinux1_x86_64" in tags) is (arch == "x86_64")


def test_wheel_source_args() -> None:
    assert WheelSource().pip_args() == []  # pip's own configuration
    assert WheelSource(find_links=("/w",)).pip_args() == ["--no-index", "--find-links", "/w"]
    assert WheelSource("http://127.0.0.1:1/simple").pip_args() == ["--index-url", "http://127.0.0.1:1/simple"]


TOOL = LockedTool("0.1.0", "linux/arm64", ("3.12",), (LockedWheel("airpack-0.1.0-py3-none-any.whl", 10, "a" * 64),))


def test_lock_round_trips_its_tool_and_omits_none() -> None:
    lock = Lock(spec_digest="sha256:x", model=LockedModel(source="local", files=()), tool=TOOL)
    assert Lock.from_dict(lock.to_dict()) == lock and lock.to_dict()["tool"]["platform"] == "linux/arm64"
    bare = Lock(spec_digest="sha256:x", model=LockedModel(source="local", files=()))
    assert "tool" not in bare.to_dict() and Lock.from_dict(bare.to_dict()).tool is None
    assert TOOL.conf() == b"# airpack tool: read by tool/install.sh\nairpack=0.1.0\nplatform=linux/arm64\npythons=3.12\n"


@pytest.mark.parametrize("name", ["../evil.whl", "x.tar.gz", ".hidden.whl"])
def test_lock_refuses_a_wheel_name_that_is_not_a_file_name(name: str) -> None:
    with pytest.raises(ValueError, match="not a wheel file name"):
        LockedWheel.from_dict({"filename": name, "size": 1, "sha256": "a" * 64})


def _spec(target: dict[str, object]) -> Spec:
    doc = {"apiVersion": "airpack/v1", "name": "m", "version": "1.0.0", "model": {"repo": "o/m"}, "target": target}
    return parse_spec(doc, Path(), check_paths=False)


def test_target_python_narrows_the_tool() -> None:
    assert _spec({}).target.python == ()
    assert _spec({"python": ["3.13", "3.12"]}).target.python == ("3.12", "3.13")
    assert _spec({"python": 3.12}).target.python == ("3.12",)
    with pytest.raises(SpecError, match=r"target\.python\[0\]: '3.10' is not valid"):
        _spec({"python": ["3.10"]})
    with pytest.raises(SpecError, match=r"target\.python: must list at least one"):
        _spec({"python": []})


def test_python_verdict() -> None:
    p311 = HostPython("python3", "/usr/bin/python3", "3.11")
    status, detail, fix = python_verdict((p311,), TOOL, bundle=True)
    assert status == "warn" and "needs CPython 3.12" in detail and fix and "python3.11 (RHEL 9" in fix
    status, detail, _ = python_verdict((p311, HostPython("python3.12", "/opt/py/bin/python3.12", "3.12")), TOOL,
                                       bundle=True)
    assert status == "pass" and "installs with /opt/py/bin/python3.12" in detail
    status, detail, _ = python_verdict((p311,), None, bundle=True)
    assert status == "pass" and "carries no tool/" in detail
    status, detail, fix = python_verdict((), None, bundle=False)
    assert status == "warn" and "none on PATH" in detail and fix
