# ruff: noqa: F811  (pytest fixtures imported from tests.dockerenv are parameters here)
"""A model-only bundle is a model update (issue 19, item 11), with real parts: a docker engine and the llama.cpp
server image. On an empty prefix it is refused with a clear line (exit 2); on a prefix that runs a bundle of the
same name it becomes a new version that serves the new weights with the running version's engine, through the
same health check and smoke test, and ``rollback`` goes back to the previous weights."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import pytest

from airpack.install.engine import LABEL_PREFIX
from tests.dockerenv import (  # noqa: F401 - fixtures are used by name
    BuiltImage,
    DockerEngine,
    Registry,
    docker_engine,
    free_port,
    llama_server_image,
    push_to,
    upstream_registry,
)
from tests.install_helpers import (
    GGUF,
    Versions,
    answers,
    build,
    build_versions,
    cli_env,
    smollm2_model,
    status_data,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]
NAME = "smollm2-update"
RENAMED = "smollm2-retrained.gguf"


@pytest.fixture(scope="module")
def life(docker_engine: DockerEngine, upstream_registry: Registry, llama_server_image: BuiltImage,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Versions]:
    root = tmp_path_factory.mktemp("update")
    smollm2_model(root)
    env = cli_env(docker_engine.host, root / "cache")
    ref = push_to(docker_engine, llama_server_image.local, upstream_registry)
    bundles, pub = build_versions(root, NAME, ref, env, [("1.0.0", 2048, None)])
    folder = root / "model-only"  # the new weights under another file name, and no runtime: a model update
    (folder / "model").mkdir(parents=True)
    os.link(root / "model" / GGUF, folder / "model" / RENAMED)
    spec = folder / "airpack.yaml"
    spec.write_text(json.dumps({"apiVersion": "airpack/v1", "name": NAME, "version": "1.1.0",
                                "model": {"path": "model"}, "target": {"gpus": 0, "vram": 4}}))
    bundles["1.1.0"] = build(env, spec, root / f"{NAME}-1.1.0.bundle", root / "keys/airpack.key")
    life = Versions(root, bundles, pub, env, docker_engine.client)
    try:
        yield life
    finally:
        for c in docker_engine.client.containers.list(all=True, filters={"label": LABEL_PREFIX}):
            if str(root) in c.labels.get(LABEL_PREFIX, ""):
                c.remove(force=True)
        with contextlib.suppress(Exception):
            if ref != llama_server_image.local:
                docker_engine.client.api.remove_image(ref)


def _model_arg(life: Versions, container_id: str) -> str:
    args = life.client.api.inspect_container(container_id)["Args"]
    return str(next(a for a in args if a.endswith(".gguf")))


def test_model_only_bundle_on_an_empty_prefix_is_refused(life: Versions) -> None:
    prefix = life.root / "empty"
    rc, out = life.install("1.1.0", prefix, free_port())
    assert rc == 2 and "model-only bundle (a model update)" in out["error"] and f"no {NAME} runs" in out["error"]
    assert not list(prefix.glob("versions/*"))


def test_model_update_swaps_the_weights_and_keeps_the_runtime(life: Versions) -> None:
    prefix, port = life.root / "prefix", free_port()
    rc, first = life.install("1.0.0", prefix, port)
    assert rc == 0, first["error"]
    assert _model_arg(life, first["data"]["containerId"]).endswith(GGUF)

    rc, up = life.install("1.1.0", prefix, port)
    assert rc == 0, up["error"]
    data = up["data"]
    assert data["version"] == "1.1.0" and data["smoke"]["ok"]
    assert _model_arg(life, data["containerId"]).endswith(RENAMED)  # the new weights …
    old, new = (life.client.api.inspect_container(c) for c in (first["data"]["containerId"], data["containerId"]))
    assert new["Image"] == old["Image"]  # … on the same engine image
    assert answers(port, prefix)
    st = status_data(life, prefix)
    assert st["version"] == "1.1.0" and st["previous"].startswith("1.0.0-") and st["healthy"]

    rc, back = life.cli("rollback", "--prefix", str(prefix))
    assert rc == 0 and back["data"]["version"] == "1.0.0", back["error"]
    assert answers(port, prefix)
    rc, forth = life.cli("rollback", "--prefix", str(prefix))  # and forward again: the update's own version
    assert rc == 0 and forth["data"]["version"] == "1.1.0" and answers(port, prefix)
    assert life.cli("uninstall", "--prefix", str(prefix), "--remove-weights")[0] == 0
