# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""bench/bench_install.py leaves the engine as it found it and never crashes in that clean-up (issue #14 item
15): the image may already be gone, or be tagged only by the runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import docker.errors
import pytest

from tests.dockerenv import (  # noqa: F401 - fixtures are used by name
    BuiltImage,
    DockerEngine,
    built_images,
    docker_engine,
    upstream_registry,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_install", ROOT / "bench" / "bench_install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clean_up_removes_added_tags_and_tolerates_a_missing_image(
    docker_engine: DockerEngine, built_images: dict[str, BuiltImage]
) -> None:
    bench = _bench()
    client = docker_engine.client
    image = built_images["busybox"]
    client.api.tag(image.image_id, "airpack.local/bench-extra", "x")
    bench.leave_as_found(client, image.local, image.image_id)
    tags = client.api.inspect_image(image.image_id)["RepoTags"]
    assert image.local in tags and "airpack.local/bench-extra:x" not in tags
    gone = "sha256:" + "0" * 64
    with pytest.raises(docker.errors.ImageNotFound):
        client.api.inspect_image(gone)
    bench.leave_as_found(client, image.local, gone)  # no ImageNotFound: the table still gets printed
