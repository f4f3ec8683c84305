"""The deploy files a bundle carries run the image by its ID, the signed config digest (issue #14 item 9): the
``airpack.local/…:<12hex>`` tag can be moved to another image after ``verify``, the ID cannot."""

from __future__ import annotations

from pathlib import Path

import yaml

from airpack.deploy import render_for_bundle
from airpack.lock import Lock, LockedFile, LockedModel
from airpack.render import HostParams, render_host
from airpack.spec import parse_spec

CONFIG = "sha256:" + "c" * 64
MANIFEST = "sha256:" + "a" * 64


def _bundle_deploy(tmp_path: Path) -> dict[str, bytes]:
    spec = parse_spec({
        "apiVersion": "airpack/v1", "name": "demo", "version": "1.0.0",
        "model": {"path": "model"}, "runtime": {"engine": "llamacpp", "image": "ghcr.io/ggml-org/llama.cpp:b1"},
        "target": {"gpus": 0, "vram": 4}, "deploy": ["compose", "systemd", "kubernetes"],
    }, tmp_path, check_paths=False)
    lock = Lock(spec_digest=spec.digest(), model=LockedModel("local", (LockedFile("m.gguf", 10, "0" * 64),)),
                images=(), plan=None, checks=())
    image = {"role": "runtime", "repository": "ghcr.io/ggml-org/llama.cpp", "manifestDigest": MANIFEST,
             "configDigest": CONFIG, "airpackTag": "airpack.local/ghcr.io/ggml-org/llama.cpp:aaaaaaaaaaaa"}
    return render_host(render_for_bundle(spec, lock, [image]), HostParams(prefix="/opt/demo", port=8000, registry="reg.local:5000", model_digest="sha256:" + "ab" * 32))


def test_compose_and_systemd_run_the_image_id_not_the_mutable_tag(tmp_path: Path) -> None:
    files = _bundle_deploy(tmp_path)
    compose = files["compose.yaml"].decode()
    service = yaml.safe_load(compose)
    assert service["services"]["demo"]["image"] == CONFIG
    unit = files["systemd/airpack-demo.service"].decode()
    quadlet = files["systemd/airpack-demo.container"].decode()
    assert f'"{CONFIG}"' in unit and f"Image={CONFIG}" in quadlet
    for text in (compose, unit, quadlet):
        assert "airpack.local" not in text
    deployment = files["kubernetes/deployment.yaml"].decode()
    # Kubernetes pulls by manifest digest, from where ``airpack push --registry`` put it (the one naming rule)
    assert f'image: "reg.local:5000/ggml-org/llama.cpp@{MANIFEST}"' in deployment
