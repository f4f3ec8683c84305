"""A delta update end to end with real parts: a local registry on 127.0.0.1 serving the runtime image (built here
in Python from the static busybox: v2 adds one layer), v1 and v2 bundles (v2 changes one weight shard), then the
CLI as a user runs it: ``split --base v1/SHA256SUMS``, ``join --base v1`` (also SIGKILLed mid-way and resumed),
``diff -r`` against the full v2 build, ``airpack verify`` and the openssl + sha256sum recipe.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airpack.bundle_layout import SUMS
from airpack.verify import verify_bundle
from tests.conftest import safetensors_bytes
from tests.dockerenv import Registry, make_image, push_image, sha256, start_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MIB = 1024 * 1024
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (scripts/setup.sh installs it)
RECIPE = ('base64 -d SHA256SUMS.sig > "$W/s.der" && openssl dgst -sha256 -verify "$PUB" -signature "$W/s.der" '
          "SHA256SUMS && sha256sum --strict -c SHA256SUMS")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("delta-reg"), "delta")
    yield reg
    reg.stop()


def _model(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "model-00001-of-00002.safetensors").write_bytes(safetensors_bytes(150 * MIB // 4, seed=7))  # 3 chunks
    (folder / "model-00002-of-00002.safetensors").write_bytes(safetensors_bytes(6 * MIB // 4, seed=version))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                                    "num_hidden_layers": 2, "num_attention_heads": 4,
                                                    "vocab_size": 256}))
    return folder


class Update:
    def __init__(self, v1: Path, v2: Path, pub: Path, layer: bytes, env: dict[str, str]) -> None:
        self.v1, self.v2, self.pub, self.new_layer, self.env = v1, v2, pub, layer, env

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "airpack", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, check=False)

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "airpack", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)


@pytest.fixture(scope="module")
def update(registry: Registry, built_bundle, keys, tmp_path_factory: pytest.TempPathFactory) -> Update:
    base_layer = {"bin/busybox": BUSYBOX.read_bytes()}
    new_layer = {"srv/app/data.bin": random.Random(5).randbytes(2 * MIB)}  # noqa: S311 - test data
    v1_image, v2_image = make_image([base_layer], label="v1"), make_image([base_layer, new_layer], label="v2")
    assert v1_image.layers[0] == v2_image.layers[0]
    push_image(registry.url, "airpack-test/runtime", "1", v1_image)
    push_image(registry.url, "airpack-test/runtime", "2", v2_image)
    root = tmp_path_factory.mktemp("update")
    bundles = []
    for version in (1, 2):
        runtime = {"engine": "custom", "image": f"{registry.host}/airpack-test/runtime:{version}", "port": 8080,
                   "health": "/health"}
        bundles.append(built_bundle(_model(root / f"model-v{version}", version), key=keys.ecdsa,
                                    version=f"{version}.0.0", runtime=runtime))
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    return Update(bundles[0], bundles[1], keys.ecdsa.pub, v2_image.layers[1], env)


@pytest.fixture(scope="module")
def delta(update: Update, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("delta-vols")
    r = update.cli("split", str(update.v2), "--key", str(update.pub), "--base", str(update.v1 / SUMS),
                   "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    (vol,) = out.iterdir()
    return vol


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_the_delta_carries_the_changed_shard_and_the_new_layer_only(update: Update, delta: Path) -> None:
    shard = "model/model-00002-of-00002.safetensors"
    doc = json.loads((delta / "airpack-volume.json").read_text())
    carried = {p["file"]: p["length"] for p in doc["pieces"]}
    new_layer = f"images/blobs/sha256/{sha256(update.new_layer)[7:]}"
    assert shard in carried and new_layer in carried
    assert "model/model-00001-of-00002.safetensors" in doc["base"]["files"]
    assert not list(delta.rglob("model-00001-of-00002*")), "the unchanged shard is never carried"
    busybox_layer = [f for f in doc["base"]["files"] if f.startswith("images/blobs/")]
    assert busybox_layer, "the busybox layer shared with v1 comes from the base"
    changed = (update.v2 / shard).stat().st_size + len(update.new_layer)
    overhead = _bytes(delta) - changed  # signed root, manifest, image config/manifest/index, sbom, deploy, volume file
    full = _bytes(update.v2)
    print(f"delta: {_bytes(delta):,} bytes on the medium for a {full:,}-byte bundle; changed {changed:,}, "
          f"overhead {overhead:,}")
    assert 0 < overhead < 256 * 1024
    assert sum(carried.values()) - changed < 64 * 1024
    r = update.cli("inspect", str(delta))
    assert r.returncode == 0 and "from the base bundle" in r.stdout and "model-00001-of-00002" in r.stdout
    r = update.cli("verify", str(delta), "--key", str(update.pub))
    assert r.returncode == 0, r.stderr


def test_join_with_the_base_is_the_full_v2_build(update: Update, delta: Path, tmp_path: Path) -> None:
    out = tmp_path / "v2"
    r = update.cli("join", str(delta), "--key", str(update.pub), "--base", str(update.v1), "--out", str(out))
    assert r.returncode == 0, r.stderr
    diff = subprocess.run(["diff", "-r", str(update.v2), str(out)], capture_output=True, text=True, check=False)
    assert diff.returncode == 0, diff.stdout
    assert update.cli("verify", str(out), "--key", str(update.pub)).returncode == 0
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "W": str(tmp_path), "PUB": str(update.pub),
           "LC_ALL": "C"}
    rec = subprocess.run(["bash", "-c", RECIPE], cwd=out, env=env, capture_output=True, text=True, check=False)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    # the image in the joined bundle is whole for an independent OCI reader: skopeo copies it out, checking digests
    (entry,) = json.loads((out / "images/index.json").read_text())["manifests"]
    ref = entry["annotations"]["org.opencontainers.image.ref.name"]
    sk = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{out / 'images'}:{ref}", f"dir:{tmp_path / 'img'}"],
                        capture_output=True, text=True, timeout=120, check=False)
    assert sk.returncode == 0, sk.stderr
    assert (tmp_path / "img" / sha256(update.new_layer)[7:]).read_bytes() == update.new_layer


def test_the_wrong_base_is_refused_naming_the_missing_files(update: Update, delta: Path, tmp_path: Path) -> None:
    out = tmp_path / "v2"
    r = update.cli("join", str(delta), "--key", str(update.pub), "--base", str(update.v2.parent / "nowhere"),
                   "--out", str(out), "--json")
    assert r.returncode == 2, r.stdout
    wrong = tmp_path / "wrong"  # a "base" that holds only the v2 manifest's neighbours, not the shared files
    wrong.mkdir()
    (wrong / "config.json").write_text("{}\n")
    (wrong / SUMS).write_text(f"{'0' * 64}  config.json\n")
    r = update.cli("join", str(delta), "--key", str(update.pub), "--base", str(wrong), "--out", str(out), "--json")
    assert r.returncode == 3
    result = json.loads(r.stdout)
    needed = json.loads((delta / "airpack-volume.json").read_text())["base"]["files"]
    assert sorted(p["path"] for p in result["problems"]) == sorted(needed)
    assert all(f in result["error"] for f in needed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong"]  # nothing copied, nothing published


def test_a_base_file_changed_after_verification_is_caught_during_the_copy(update: Update, delta: Path, keys,
                                                                          tmp_path: Path) -> None:
    base = tmp_path / "v1"
    subprocess.run(["cp", "-a", str(update.v1), str(base)], check=True)
    verify_bundle(base, [keys.ecdsa.public])
    shard = base / "model/model-00001-of-00002.safetensors"
    with shard.open("r+b") as fh:  # one byte in the third chunk, size unchanged
        fh.seek(140 * MIB)
        byte = fh.read(1)
        fh.seek(140 * MIB)
        fh.write(bytes([byte[0] ^ 0xFF]))
    out = tmp_path / "v2"
    r = update.cli("join", str(delta), "--key", str(update.pub), "--base", str(base), "--out", str(out))
    assert r.returncode == 3, r.stderr
    assert f"{shard}: does not match the signed bundle (a file of the base bundle)" in r.stderr
    assert not out.exists()


def _done(out: Path) -> list[list[object]]:
    try:
        return json.loads((out.parent / f".{out.name}.airpack-join" / "state.json").read_text())["done"]
    except (FileNotFoundError, ValueError, KeyError):
        return []


@pytest.mark.parametrize("after", ["volume", "base"])
def test_a_killed_join_with_a_base_resumes(update: Update, delta: Path, tmp_path: Path, after: str) -> None:
    doc = json.loads((delta / "airpack-volume.json").read_text())
    pieces = len(doc["pieces"])
    target = 1 if after == "volume" else pieces + 1  # stop after a piece of the volume, or a file of the base
    out = tmp_path / "v2"
    args = ("join", str(delta), "--key", str(update.pub), "--base", str(update.v1), "--out", str(out), "--json")
    proc = update.popen(*args)
    deadline = time.monotonic() + 60
    while len(_done(out)) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        assert proc.poll() is None, "the join finished before it could be stopped"
        assert not out.exists()
        done = _done(out)
        if after == "base":
            assert {d[0] for d in done} & set(doc["base"]["files"]), "no base file was in when the join was killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    r = update.cli(*args)
    assert r.returncode == 0, r.stderr
    need = sum(p["length"] for p in doc["pieces"]) + sum((update.v2 / f).stat().st_size for f in doc["base"]["files"])
    assert json.loads(r.stdout)["data"]["added_bytes"] == need - sum(int(d[2]) for d in done)  # resumed
    assert subprocess.run(["diff", "-r", str(update.v2), str(out)], check=False).returncode == 0
    assert not (tmp_path / ".v2.airpack-join").exists()


def test_the_joined_bundle_installs_its_image_as_any_bundle(update: Update, delta: Path, tmp_path: Path) -> None:
    """``airpack push`` (install's registry path: verify, then push byte for byte) of the joined v2 to an internal
    registry that already holds v1: skopeo reads back the v2 image, the new layer and the busybox layer."""
    out = tmp_path / "v2"
    assert update.cli("join", str(delta), "--key", str(update.pub), "--base", str(update.v1),
                      "--out", str(out)).returncode == 0
    internal = start_registry(tmp_path / "internal", "internal")
    try:
        for bundle in (update.v1, out):
            r = update.cli("push", str(bundle), "--key", str(update.pub), "--registry", f"{internal.host}/site",
                           "--json")
            assert r.returncode == 0, r.stdout + r.stderr
        (ref,) = json.loads(r.stdout)["data"]["images"]
        info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                                         capture_output=True, text=True, timeout=120, check=True).stdout)
        manifest = json.loads((update.v2 / "airpack.json").read_text())["images"][0]
        assert info["Digest"] == manifest["digest"]
        assert sha256(update.new_layer) in info["Layers"] and len(info["Layers"]) == 2
    finally:
        internal.stop()
