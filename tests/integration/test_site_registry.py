"""The site registry with real parts: a bundle (a runtime image from a ``host:port`` registry on 127.0.0.1 and a
small safetensors model) pushed with ``airpack push`` to a Debian ``docker-registry``; skopeo pulls the model back
as an OCI layout and every blob equals the bundle's file; the config validates against the ModelPack schema; and
every image the Kubernetes manifests rendered for the same ``--registry`` name exists there (``skopeo inspect``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airpack.bundle_layout import MODEL_DIR
from tests.conftest import safetensors_bytes
from tests.dockerenv import Registry, direct_env, make_image, push_image, registry_pair
from tests.install_helpers import cli_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MIB = 1024 * 1024
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (scripts/setup.sh installs it)
SCHEMA = Path(__file__).resolve().parents[1] / "data" / "modelpack" / "config-schema.json"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    with registry_pair(tmp_path_factory, "site") as pair:
        yield pair


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return direct_env()


@pytest.fixture(scope="module")
def bundle(registries: tuple[Registry, Registry], built_bundle, keys, tmp_path_factory) -> Path:
    upstream, _ = registries
    push_image(upstream.url, "airpack-test/runtime", "1", make_image([{"bin/busybox": BUSYBOX.read_bytes()}]))
    model = tmp_path_factory.mktemp("site-model") / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(safetensors_bytes(3 * MIB // 4, seed=3))
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                                   "num_hidden_layers": 2, "num_attention_heads": 4,
                                                   "vocab_size": 256}))
    (model / "tokenizer.json").write_text("{}")
    (model / "README.md").write_text("# a test model\n")
    runtime = {"engine": "custom", "image": f"{upstream.host}/airpack-test/runtime:1", "port": 8080,
               "health": "/health"}
    return built_bundle(model, key=keys.ecdsa, runtime=runtime, deploy=["kubernetes"])


def _skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def pushed(bundle: Path, registries: tuple[Registry, Registry], keys, env: dict[str, str]) -> dict[str, Any]:
    _, internal = registries
    return cli_data(env, "push", str(bundle), "--key", str(keys.ecdsa.pub), "--registry", f"{internal.host}/site")


def test_push_writes_the_model_as_a_modelpack_artifact_skopeo_reads_back(
        pushed: dict[str, Any], bundle: Path, registries: tuple[Registry, Registry], tmp_path: Path) -> None:
    _, internal = registries
    ref = pushed["model"]
    assert ref.startswith(f"{internal.host}/site/test-model@sha256:")
    out = tmp_path / "oci"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}")
    index = json.loads((out / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == ref.rpartition("@")[2]

    def blob(digest: str) -> bytes:
        data = (out / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
        return data

    manifest = json.loads(blob(entry["digest"]))
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    signed = {e["path"].removeprefix(f"{MODEL_DIR}/"): e
              for e in json.loads((bundle / "airpack.json").read_text())["files"]
              if e["path"].startswith(f"{MODEL_DIR}/")}
    layers = {ly["annotations"]["org.cncf.model.filepath"]: ly for ly in manifest["layers"]}
    assert set(layers) == set(signed) >= {"model.safetensors", "config.json", "tokenizer.json", "README.md"}
    for rel, layer in layers.items():  # every blob is the bundle's file, byte for byte
        assert blob(layer["digest"]) == (bundle / MODEL_DIR / rel).read_bytes()
        assert layer["digest"] == f"sha256:{signed[rel]['sha256']}"
    assert layers["model.safetensors"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert layers["config.json"]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert layers["README.md"]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    config = json.loads(blob(manifest["config"]["digest"]))
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(config)
    assert config["descriptor"]["name"] == "test-model" and config["descriptor"]["version"] == "1.0.0"
    assert config["modelfs"]["diffIds"] == [ly["digest"] for ly in manifest["layers"]]
    # the planner's facts, recorded in the lock even without a memory plan (target.gpu/vram not given)
    assert config["config"]["architecture"] == "LlamaForCausalLM" and config["config"]["format"] == "safetensors"
    assert config["config"]["paramSize"][-1] in "KMB"
    tagged = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw",
                                f"docker://{internal.host}/site/test-model:1.0.0"))
    assert tagged == manifest  # tagged with the bundle version


def test_push_again_is_a_no_op_with_the_same_references(
        pushed: dict[str, Any], bundle: Path, registries: tuple[Registry, Registry], keys,
        env: dict[str, str]) -> None:
    _, internal = registries
    again = cli_data(env, "push", str(bundle), "--key", str(keys.ecdsa.pub), "--registry", f"{internal.host}/site")
    assert (again["images"], again["model"]) == (pushed["images"], pushed["model"])


def test_every_image_the_kubernetes_manifests_name_is_in_the_registry_after_push(
        pushed: dict[str, Any], bundle: Path, registries: tuple[Registry, Registry], keys, env: dict[str, str],
        tmp_path: Path) -> None:
    upstream, internal = registries
    prefix = tmp_path / "k8s"
    data = cli_data({**env, "PATH": str(Path(sys.executable).parent)}, "install", str(bundle), "--key",
                str(keys.ecdsa.pub), "--prefix", str(prefix), "--target", "kubernetes", "--registry",
                f"{internal.host}/site", "--no-api-key")
    assert data["applied"] is False and data["weights"] == "image-volume"
    docs = [doc for path in sorted((prefix / "deploy" / "kubernetes").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_bytes())]
    images = [value for doc in docs for value in _walk_images(doc)]
    assert images, "the manifests name the runtime image"
    for image in images:
        assert upstream.host not in image  # the source registry (host:port) is not part of the site path
        assert image in pushed["images"]
        info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{image}"))
        assert info["Digest"] == image.rpartition("@")[2]
    # the default weights mode mounts the model artifact push wrote, by the digest install computed offline
    (volume,) = [v for doc in docs if doc["kind"] == "Deployment" for v in doc["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "weights"]
    assert volume["image"]["reference"] == pushed["model"]
    raw = json.loads(_skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{pushed['model']}"))
    assert raw["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    # ... so the install host keeps no copy of the weights (only host-path reads them from it)
    assert not any((prefix / "versions").glob("*/model/*"))


def _walk_images(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _walk_images(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _walk_images(item)


def test_the_model_goes_in_resumable_chunks_like_the_images(
        bundle: Path, registries: tuple[Registry, Registry], keys, tmp_path: Path) -> None:
    """A chunk size below the weight file's size: the safetensors layer is uploaded in ``PATCH`` chunks and the
    registry accepts it under the file's signed digest."""
    from airpack.install.images import model_artifact
    from airpack.oci.push import push_model
    from airpack.verify import verify_bundle

    _, internal = registries
    verified = verify_bundle(bundle, [keys.ecdsa.public])
    artifact = model_artifact(verified)
    sent: list[int] = []
    ref = push_model(artifact, bundle / MODEL_DIR, f"{internal.host}/chunked", "test-model", "1.0.0",
                     chunk_size=MIB, progress=sent.append)
    assert ref == f"{internal.host}/chunked/test-model@{artifact.manifest_descriptor.digest}"
    weight = next(ly for ly in artifact.layers if ly.file.path == "model.safetensors")
    assert weight.file.size > 3 * MIB - MIB and sent.count(MIB) >= 2  # chunks, not one PUT
    out = tmp_path / "oci"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{out}")
    data = (out / "blobs" / "sha256" / weight.file.sha256).read_bytes()
    assert data == (bundle / MODEL_DIR / "model.safetensors").read_bytes()
