"""The weights image (airpack.oci.weights_image): deterministic tar layers whose digests are the sha256 of the
bytes tar reads back, long and non-ASCII names, the config's diff_ids, and the init container's copy run for real
under busybox sh and dash (copies, keeps a good file, fails on a wrong byte, takes odd names literally)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from airpack.errors import UsageError, VerificationError
from airpack.oci import weights_image as wi
from airpack.oci.modelpack import ModelFile
from tests.dockerenv import required

BUSYBOX = Path("/bin/busybox")
LONG = "deep/" + "/".join(f"folder-{i:02d}-with-a-fairly-long-name" for i in range(8)) + "/weights.safetensors"


def _write(root: Path, files: dict[str, bytes]) -> list[ModelFile]:
    out = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        out.append(ModelFile(rel, len(data), hashlib.sha256(data).hexdigest()))
    return sorted(out, key=lambda f: f.path.encode())


def _layer_bytes(root: Path, f: ModelFile) -> bytes:
    head, tail = wi.tar_frame(f.path, f.size)
    return head + (root / f.path).read_bytes() + tail


def _base() -> wi.BaseImage:
    layer = gzip.compress(b"not really a tar", mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/app/server"], "Cmd": ["--port", "8080"], "Env": ["PATH=/bin"],
                                    "Healthcheck": {"Test": ["CMD", "true"]}},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
                         "history": [{"created_by": "base"}]}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                                       "size": len(layer)}]}).encode()
    return wi.BaseImage("ghcr.io/org/runtime:1", "sha256:" + hashlib.sha256(manifest).hexdigest(), manifest, config)


FILES = {"model.safetensors": os.urandom(3 * 1024 * 1024 + 17), "config.json": b'{"a": 1}', "empty.txt": b"",
         "sub/dir/tokenizer.json": b"{}" * 300, LONG: b"x" * 1000, "modèle/poids.bin": b"\x00\x01" * 700}


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, list[ModelFile]]:
    root = tmp_path / "model"
    return root, _write(root, FILES)


def _image(root: Path, files: list[ModelFile]) -> wi.WeightsImage:
    layers = wi.layer_descriptors(files, root, workers=3)
    return wi.build_weights_image(_base(), files, layers, "demo", "1.0.0+b1", "2026-01-02T03:04:05Z")


def test_each_layer_digest_is_the_sha256_of_a_tar_that_holds_the_file_byte_for_byte(model) -> None:
    root, files = model
    for desc, f in zip(wi.layer_descriptors(files, root), files, strict=True):
        data = _layer_bytes(root, f)
        assert desc.digest == "sha256:" + hashlib.sha256(data).hexdigest() and desc.size == len(data)
        assert desc.media_type == "application/vnd.oci.image.layer.v1.tar" and len(data) % 512 == 0
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            *dirs, member = members
            assert member.name == f"airpack/model/{f.path}" and member.isfile()
            parts = f.path.split("/")
            assert [d.name for d in dirs] == ["airpack", "airpack/model"] + [
                "airpack/model/" + "/".join(parts[:i]) for i in range(1, len(parts))]
            assert all(d.isdir() and d.mode == 0o555 for d in dirs) and member.mode == 0o444
            assert all(m.uid == m.gid == 0 and m.mtime == 0 for m in members)
            extracted = tar.extractfile(member)
            assert extracted is not None and extracted.read() == FILES[f.path]


def test_gnu_tar_lists_and_extracts_every_layer_the_same(model, tmp_path: Path) -> None:
    root, files = model
    out = tmp_path / "x"
    out.mkdir()
    for f in files:
        layer = tmp_path / "layer.tar"
        layer.write_bytes(_layer_bytes(root, f))
        listing = subprocess.run(["tar", "-tvf", str(layer)], capture_output=True, text=True, check=True)
        assert listing.stderr == "" and f"airpack/model/{f.path}" in listing.stdout
        assert "r--r--r-- 0/0" in listing.stdout.splitlines()[-1]
        subprocess.run(["tar", "-xf", str(layer), "-C", str(out), "--no-same-permissions"], check=True)
        for d in [out / "airpack", *(out / "airpack").rglob("*")]:
            if d.is_dir():
                d.chmod(0o700)  # the layers' folders are 0555: let the next layer add its files
    for f in files:
        assert (out / "airpack" / "model" / f.path).read_bytes() == FILES[f.path]


def test_long_and_non_ascii_names_take_a_pax_record_and_sizes_over_8_gib_too() -> None:
    for rel in (LONG, "modèle/poids.bin"):
        head, _ = wi.tar_frame(rel, 3)
        assert _headers(head)[-1].name == f"airpack/model/{rel}"
    big = 9 * 1024**3 + 5  # over the 11 octal digits of a ustar size field
    head, tail = wi.tar_frame("huge.gguf", big)
    assert len(tail) == -big % 512 + 1024
    last = _headers(head)[-1]
    assert (last.name, last.size) == ("airpack/model/huge.gguf", big)


def _headers(head: bytes) -> list[tarfile.TarInfo]:
    """The members a layer's head describes (its file's body left out: the file's header is read, never its
    data)."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as tar:
        while (m := tar.next()) is not None:
            out.append(m)
            if m.isfile():
                break
    return out


def test_the_same_files_give_the_same_image_bytes_in_any_order(model) -> None:
    root, files = model
    one, two = _image(root, files), _image(root, list(reversed(files)))
    assert (one.manifest, one.config) == (two.manifest, two.config)
    assert one.manifest_descriptor.digest == "sha256:" + hashlib.sha256(one.manifest).hexdigest()
    assert [ly.file.path for ly in one.layers] == sorted(FILES, key=str.encode)


def test_the_config_extends_the_runtime_config_and_the_manifest_keeps_its_layers(model) -> None:
    root, files = model
    image = _image(root, files)
    config, base = json.loads(image.config), json.loads(_base().config)
    added = [ly.descriptor.digest for ly in image.layers]
    assert config["rootfs"]["diff_ids"] == base["rootfs"]["diff_ids"] + added  # uncompressed: diff_id == digest
    assert len(config["history"]) == 1 + len(files)
    assert config["history"][-1]["created"] == "2026-01-02T03:04:05Z"
    assert "Entrypoint" not in config["config"] and "Healthcheck" not in config["config"]
    assert config["config"]["Env"] == ["PATH=/bin"]
    assert tuple(config["config"]["Cmd"]) == wi.init_copy_command(image.files)
    manifest = json.loads(image.manifest)
    assert manifest["layers"][0] == json.loads(_base().manifest)["layers"][0]
    assert [ly["digest"] for ly in manifest["layers"][1:]] == added
    assert manifest["config"] == image.config_descriptor.to_dict()
    assert manifest["annotations"]["org.opencontainers.image.version"] == "1.0.0+b1"
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == _base().digest


def test_a_model_file_that_changed_since_verification_is_refused(model) -> None:
    root, files = model
    (root / "config.json").write_bytes(b'{"a": 2}')
    with pytest.raises(VerificationError, match=r"config\.json"):
        wi.layer_descriptors(files, root)


def test_names_and_tags_beside_the_model_artifact(model) -> None:
    root, files = model
    image = _image(root, files)
    assert wi.weights_repository("site", "Demo") == "site/demo"
    assert wi.weights_tag("1.0.0+b1") == "1.0.0-b1-weights"
    assert wi.weights_reference("reg:5000/site", "demo", image) == \
        f"reg:5000/site/demo@{image.manifest_descriptor.digest}"
    with pytest.raises(UsageError):
        wi.weights_tag("v" * 125)


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../b", "a//b", "a\nb", "tab\there", ".airpack-partial"])
def test_the_copy_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(UsageError):
        wi.init_copy_command([(path, "0" * 64)])


def test_the_copy_refuses_a_malformed_sum() -> None:
    with pytest.raises(UsageError, match="sha256"):
        wi.init_copy_command([("a", "ABC")])


# ---- the init copy, run for real ----------------------------------------------------------------------------
def _busybox_bin(tmp: Path) -> Path:
    """A PATH holding only busybox applets: the script must not need anything else."""
    folder = tmp / "bb-bin"
    folder.mkdir(exist_ok=True)
    for applet in ("sh", "mkdir", "tee", "sha256sum", "mv", "rm", "printf"):
        link = folder / applet
        if not link.exists():
            link.symlink_to(BUSYBOX)
    return folder


SHELLS = {"busybox-sh": ("busybox", True), "dash-coreutils": ("dash", False), "dash-busybox": ("dash", True)}


@pytest.fixture(params=sorted(SHELLS))
def run_copy(request, tmp_path: Path):
    shell, applets = SHELLS[request.param]
    if (shell == "busybox" or applets) and not BUSYBOX.is_file():
        required("no /bin/busybox (scripts/setup.sh installs busybox-static)")
    if shell == "dash" and shutil.which("dash") is None:
        required("no dash")
    path = str(_busybox_bin(tmp_path)) if applets else os.environ["PATH"]
    prefix = [str(BUSYBOX), "sh"] if shell == "busybox" else [shutil.which("dash") or "dash"]

    def run(files: list[tuple[str, str]], src: Path, dst: Path) -> subprocess.CompletedProcess[str]:
        argv = wi.init_copy_command(files, str(src), str(dst))
        assert argv[:2] == ("sh", "-c")
        return subprocess.run([*prefix, *argv[1:]], capture_output=True, text=True, timeout=60, check=False,
                              env={"PATH": path})
    return run


ODD = "odd name $(touch pwned) `x` ; & ' \" * ?.bin"


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    src = tmp_path / "src"
    data = {"model.safetensors": os.urandom(2 * 1024 * 1024 + 3), "sub/tok en.json": b"{}", ODD: b"literal",
            "empty": b""}
    for rel, body in data.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)
    return src, data


def _sums(data: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(rel, hashlib.sha256(body).hexdigest()) for rel, body in sorted(data.items())]


def test_the_copy_copies_every_file_and_takes_odd_names_literally(run_copy, source, tmp_path: Path) -> None:
    src, data = source
    dst = tmp_path / "weights"
    r = run_copy(_sums(data), src, dst)
    assert r.returncode == 0, r.stderr
    assert "4 copied, 0 already in place" in r.stdout
    for rel, body in data.items():
        assert (dst / rel).read_bytes() == body
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert not (dst / wi.PARTIAL).exists()
    assert sorted(p.name for p in dst.iterdir()) == sorted([ODD, "empty", "model.safetensors", "sub"])


def test_a_file_already_in_place_with_the_right_sum_is_kept(run_copy, source, tmp_path: Path) -> None:
    src, data = source
    dst = tmp_path / "weights"
    assert run_copy(_sums(data), src, dst).returncode == 0
    inode = (dst / "model.safetensors").stat().st_ino
    (dst / "sub" / "tok en.json").write_bytes(b"stale")  # a wrong file from an earlier run: copied again
    r = run_copy(_sums(data), src, dst)
    assert r.returncode == 0, r.stderr
    assert "1 copied, 3 already in place" in r.stdout
    assert (dst / "model.safetensors").stat().st_ino == inode
    assert (dst / "sub" / "tok en.json").read_bytes() == b"{}"


def test_a_source_byte_that_differs_fails_naming_the_file_and_leaves_nothing(run_copy, source,
                                                                             tmp_path: Path) -> None:
    src, data = source
    dst = tmp_path / "weights"
    body = bytearray(data["model.safetensors"])
    body[1_000_000] ^= 1
    (src / "model.safetensors").write_bytes(bytes(body))
    r = run_copy(_sums(data), src, dst)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert "model.safetensors" in line and hashlib.sha256(data["model.safetensors"]).hexdigest() in line
    assert not (dst / "model.safetensors").exists() and not (dst / wi.PARTIAL).exists()


def test_a_missing_source_file_fails_naming_it(run_copy, source, tmp_path: Path) -> None:
    src, data = source
    (src / "empty").unlink()
    r = run_copy(_sums(data), src, tmp_path / "weights")
    assert r.returncode == 1 and "airpack init-copy: empty: cannot copy" in r.stderr
    assert not (tmp_path / "weights" / "empty").exists()
