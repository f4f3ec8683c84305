"""The weights image with real parts: a bundle (a busybox-static runtime image from a ``host:port`` registry on
127.0.0.1 and a small model) pushed with ``airpack push --weights-image`` to a Debian ``docker-registry``; skopeo
reads back the manifest ``weights_image(verified)`` computed offline; the runtime's layers were mounted, not
uploaded again; a second push uploads nothing; and a private docker engine pulls the image and runs its init copy
into a folder, which then holds every model file byte for byte.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from airpack.bundle_layout import MODEL_DIR
from airpack.install.images import push_weights_image, weights_image
from airpack.oci.weights_image import init_copy_command, weights_reference
from airpack.verify import verify_bundle
from tests.conftest import safetensors_bytes
from tests.dockerenv import (  # noqa: F401 - fixtures are used by name
    OCI_MANIFEST,
    DockerEngine,
    FaultProxy,
    MadeImage,
    Registry,
    direct_env,
    docker_engine,
    push_image,
    registry_pair,
    sha256,
)
from tests.install_helpers import cli_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MIB = 1024 * 1024
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (scripts/setup.sh installs it)
APPLETS = ("sh", "mkdir", "tee", "sha256sum", "mv", "rm", "printf", "cat", "ls")
NESTED = "tokenizer/" + "/".join(f"level-{i}-of-a-rather-long-folder-name" for i in range(4)) + "/vocab.json"


def busybox_image() -> MadeImage:
    """A runtime image made from scratch: ``/bin/busybox`` (0755) and its applets as links, an entrypoint that
    is not a shell (the weights image drops it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("bin/",):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    raw = buf.getvalue()
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": ["/bin/busybox", "httpd", "-f"], "Cmd": ["-p", "8080"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]}, "history": [{"created_by": "airpack test"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                    "size": len(layer)}],
    }).encode()
    return MadeImage(manifest, OCI_MANIFEST, config, [layer])


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    with registry_pair(tmp_path_factory, "wi") as pair:
        yield pair


@pytest.fixture(scope="module")
def proxy(registries: tuple[Registry, Registry]) -> Iterator[FaultProxy]:
    """A logging proxy in front of the internal registry: which blobs were uploaded, which mounted."""
    p = FaultProxy(registries[1].url)
    yield p
    p.close()


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return direct_env()


@pytest.fixture(scope="module")
def bundle(registries: tuple[Registry, Registry], built_bundle, keys, tmp_path_factory) -> Path:
    upstream, _ = registries
    push_image(upstream.url, "airpack-test/bb-runtime", "1", busybox_image())
    model = tmp_path_factory.mktemp("wi-model") / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(safetensors_bytes(3 * MIB // 4, seed=5))
    (model / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                                   "num_hidden_layers": 2, "num_attention_heads": 4,
                                                   "vocab_size": 256}))
    (model / NESTED).parent.mkdir(parents=True)
    (model / NESTED).write_text(json.dumps({"a": 0}))
    runtime = {"engine": "custom", "image": f"{upstream.host}/airpack-test/bb-runtime:1", "port": 8080,
               "health": "/health"}
    return built_bundle(model, key=keys.ecdsa, runtime=runtime, deploy=["kubernetes"])


def _skopeo(*args: str) -> bytes:
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def pushed(bundle: Path, proxy: FaultProxy, keys, env: dict[str, str]) -> dict[str, Any]:
    data = cli_data(env, "push", str(bundle), "--key", str(keys.ecdsa.pub), "--registry", f"{proxy.host}/site",
                "--weights-image")
    return {**data, "log": list(proxy.log)}


@pytest.fixture(scope="module")
def verified(bundle: Path, keys):
    return verify_bundle(bundle, [keys.ecdsa.public])


def test_push_puts_the_manifest_computed_offline_where_render_names_it(
        pushed: dict[str, Any], verified, proxy: FaultProxy, registries: tuple[Registry, Registry]) -> None:
    image = weights_image(verified)  # offline: no registry involved
    ref = pushed["weightsImage"]
    assert ref == weights_reference(f"{proxy.host}/site", "test-model", image)
    _, internal = registries
    digest = image.manifest_descriptor.digest
    raw = _skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{internal.host}/site/test-model@{digest}")
    assert raw == image.manifest and sha256(raw) == digest
    tagged = _skopeo("inspect", "--tls-verify=false", "--raw",
                     f"docker://{internal.host}/site/test-model:1.0.0-weights")
    assert tagged == image.manifest
    assert pushed["model"].startswith(f"{proxy.host}/site/test-model@")  # beside the model artifact
    doc = json.loads(raw)
    assert [ly["annotations"]["dev.airpack.weights.path"] for ly in doc["layers"][1:]] == sorted(
        ["config.json", "model.safetensors", NESTED])


def test_the_runtime_layers_are_mounted_not_uploaded_again(pushed: dict[str, Any], verified) -> None:
    image = weights_image(verified)
    (base,) = image.base.layers
    posts = [p for m, p, _ in pushed["log"] if m == "POST" and p.startswith("/v2/site/test-model/blobs/uploads/")]
    assert any(f"mount={base.digest.replace(':', '%3A')}" in p for p in posts), posts
    puts = [p for m, p, _ in pushed["log"] if m in ("PUT", "PATCH") and "/v2/site/test-model/blobs/" in p]
    assert not any(base.digest.replace(":", "%3A") in p for p in puts)


def test_a_second_push_uploads_no_blob(pushed: dict[str, Any], verified, proxy: FaultProxy) -> None:
    before = len(proxy.log)
    ref = push_weights_image(verified, f"{proxy.host}/site")
    assert ref == pushed["weightsImage"]
    calls = proxy.log[before:]
    assert [m for m, _, _ in calls if m in ("POST", "PATCH")] == []
    assert [p for m, p, _ in calls if m == "PUT"] == ["/v2/site/test-model/manifests/1.0.0-weights"]


def test_the_tar_layers_go_in_resumable_chunks(verified, registries: tuple[Registry, Registry]) -> None:
    """A chunk size below the weight layer's size: ``PATCH`` chunks of ``head + file + tail``, accepted under the
    layer's digest; the blob read back is the tar the digest names, holding the file. The runtime image was never
    pushed under this prefix, so the registry answers the mount with 202 and the base layer is uploaded from the
    bundle instead (the manifest is accepted only when every blob is there)."""
    from airpack.bundle_layout import IMAGES_DIR
    from airpack.oci.push import push_weights_image as push

    _, internal = registries
    image = weights_image(verified)
    sent: list[int] = []
    ref = push(image, verified.path / IMAGES_DIR, verified.path / MODEL_DIR, f"{internal.host}/chunked",
               "test-model", "1.0.0", chunk_size=MIB // 2, progress=sent.append)
    assert ref.endswith(image.manifest_descriptor.digest)
    assert sent.count(MIB // 2) >= 4
    weight = next(ly for ly in image.layers if ly.file.path == "model.safetensors")
    resp = requests.get(f"{internal.url}/v2/chunked/test-model/blobs/{weight.descriptor.digest}", timeout=60)
    assert resp.status_code == 200 and sha256(resp.content) == weight.descriptor.digest
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        member = tar.extractfile("airpack/model/model.safetensors")
        assert member is not None
        assert member.read() == (verified.path / MODEL_DIR / "model.safetensors").read_bytes()


@pytest.mark.docker
def test_the_init_container_copies_every_file_byte_for_byte(
        pushed: dict[str, Any], verified, registries: tuple[Registry, Registry],
        docker_engine: DockerEngine,  # noqa: F811 - the fixture
        tmp_path: Path) -> None:
    _, internal = registries
    image = weights_image(verified)
    ref = f"{internal.host}/site/test-model@{image.manifest_descriptor.digest}"  # loopback: plain HTTP
    env = docker_engine.env()

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=300,
                              check=False)

    r = docker("pull", ref)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "weights"
    out.mkdir()
    r = docker("run", "--rm", "--network", "host", "-v", f"{out}:/weights", ref, *init_copy_command(image.files))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 copied, 0 already in place" in r.stdout
    for layer in image.layers:
        got = (out / layer.file.path).read_bytes()
        assert got == (verified.path / MODEL_DIR / layer.file.path).read_bytes()
        assert hashlib.sha256(got).hexdigest() == layer.file.sha256
    r = docker("run", "--rm", "--network", "host", "-v", f"{out}:/weights", ref)  # the image's own command
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 copied, 3 already in place" in r.stdout
    docker("rmi", ref)


@pytest.mark.docker
def test_the_rendered_init_container_names_the_pushed_image_and_copies_with_its_own_command(
        pushed: dict[str, Any], bundle: Path, keys, env: dict[str, str], proxy: FaultProxy,
        registries: tuple[Registry, Registry],
        docker_engine: DockerEngine,  # noqa: F811 - the fixture
        tmp_path: Path) -> None:
    """``render --weights init-copy`` names, offline, the image push wrote; the init container it renders (its
    ``command`` run as Kubernetes would, replacing the entrypoint) copies every file and checks it."""
    _, internal = registries
    out = tmp_path / "rendered"
    cli_data(env, "render", str(bundle), "--key", str(keys.ecdsa.pub), "--target", "kubernetes", "--registry",
         f"{proxy.host}/site", "--weights", "init-copy", "--no-api-key", "--out", str(out))
    deployment = yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_bytes())
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == pushed["weightsImage"]
    assert {"name": "weights", "emptyDir": {"sizeLimit": "2Gi"}} in pod["volumes"]
    ref = f"{internal.host}/site/test-model@{init['image'].rpartition('@')[2]}"  # the same registry, directly
    denv = docker_engine.env()

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, env=denv, timeout=300,
                              check=False)

    assert docker("pull", ref).returncode == 0
    weights = tmp_path / "weights"
    weights.mkdir()
    command = [arg.replace("$$", "$") for arg in init["command"]]  # the kubelet's expansion: "$$" is "$"
    r = docker("run", "--rm", "--network", "host", "-v", f"{weights}:{init['volumeMounts'][0]['mountPath']}",
               "--entrypoint", command[0], ref, *command[1:])
    assert r.returncode == 0, r.stdout + r.stderr
    copied = sorted(str(p.relative_to(weights)) for p in weights.rglob("*") if p.is_file())
    signed = sorted(e["path"].removeprefix(f"{MODEL_DIR}/")
                    for e in json.loads((bundle / "airpack.json").read_text())["files"]
                    if e["path"].startswith(f"{MODEL_DIR}/"))
    assert copied == signed
    for rel in copied:
        assert (weights / rel).read_bytes() == (bundle / MODEL_DIR / rel).read_bytes()
    docker("rmi", ref)
