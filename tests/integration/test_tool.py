"""Issue 13: every bundle carries the tool that verifies and installs it (``tool/``).

Real parts only: bundles are built by the CLI with the tool's wheels from the local wheelhouse
(scripts/tool-wheelhouse.sh, ``--tool-find-links``); ``tool/install.sh`` runs under dash and busybox sh,
offline for real (``unshare -n -m``, every package index and pip cache and config hidden under tmpfs, ``env -i``,
``PIP_CONFIG_FILE=/dev/null``), with the host's own Python; pip resolves the carried wheel sets for the other
Pythons and for arm64 without those interpreters. Bad input exits before any Python runs: ``--python`` points
at a script that leaves a mark when it is run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airpack import __version__
from airpack.tool import platform_tags

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HIDE = ("/root/.cache", "/root/.config", "/root/.pip", "/etc/xdg/pip", "/opt/pypi", "/opt/pypi-more", "/opt/wheels",
        str(Path.home() / ".cache"), str(Path.home() / ".config"), str(REPO))
HIDE_FILES = ("/etc/pip.conf",)
BARE = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8", "PIP_CONFIG_FILE": "/dev/null"}
FAR_SIDE_MODULES = ("airpack.cli", "airpack.verify", "airpack.volumes", "airpack.install", "airpack.install.doctor",
                    "airpack.install.images", "airpack.install.pipeline", "airpack.install.status",
                    "airpack.install.remove", "airpack.install.targets",
                    "airpack.plan.spec", "airpack.describe", "airpack.tool.host")
BUILD_ONLY = ("huggingface_hub", "gguf", "numpy", "cyclonedx")


def airpack(*args: object, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "airpack", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def offline(args: list[str], *, sh_name: str = "dash", timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``shell args…`` with no network, no index, no pip cache or configuration, and a bare environment."""
    if os.geteuid() != 0:
        pytest.fail("the offline install test needs root (unshare -n -m)")
    mounts = "".join(f"if [ -d {d} ]; then mount -t tmpfs tmpfs {d}; fi\n" for d in HIDE)
    mounts += "".join(f"if [ -f {f} ]; then mount --bind /dev/null {f}; fi\n" for f in HIDE_FILES)
    env = " ".join(f"{k}={v}" for k, v in BARE.items())
    script = f'set -e\n{mounts}cd "$1"; shift\nexec env -i {env} "$@"\n'
    cwd = args.pop(0)
    sh = ["busybox", "sh"] if sh_name == "busybox" else [sh_name]
    return subprocess.run(["unshare", "-n", "-m", "--", "sh", "-c", script, "sh", cwd, *sh, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, make_model: Callable[..., Path], keys) -> Callable[..., Path]:
    """``built(name, target)`` → a signed bundle with tool/ (the same model; built once per name)."""
    from tests.conftest import spec_text, tool_wheelhouse

    work = tmp_path_factory.mktemp("tool-bundles")
    model = make_model()
    done: dict[str, Path] = {}

    def build(name: str, target: dict[str, object] | None = None) -> Path:
        if name not in done:
            folder = work / name
            folder.mkdir()
            spec = folder / "airpack.yaml"
            spec.write_text(spec_text(str(model), target={"gpus": 0, **(target or {})}))
            t0 = time.monotonic()
            airpack("build", spec, "--out", folder / "bundle", "--key", keys.ecdsa.key,
                    "--tool-find-links", tool_wheelhouse())
            print(f"build {name}: {time.monotonic() - t0:.1f} s")
            done[name] = folder / "bundle"
        return done[name]

    return build


def wheels(bundle: Path) -> list[str]:
    return sorted(p.name for p in (bundle / "tool" / "wheels").iterdir())


def test_bundle_carries_a_signed_tool(built: Callable[..., Path], keys) -> None:
    bundle = built("amd64")
    sums = (bundle / "SHA256SUMS").read_text()
    listed = {line.split("  ", 1)[1] for line in sums.splitlines()}
    found = {p.relative_to(bundle).as_posix() for p in (bundle / "tool").rglob("*") if p.is_file()}
    assert found <= listed and {"tool/install.sh", "tool/tool.conf"} <= found
    names = wheels(bundle)
    assert any(n.startswith(f"airpack-{__version__}-") for n in names) and any(n.startswith("pip-") for n in names)
    assert not any(n.startswith(("huggingface_hub", "gguf", "numpy", "cyclonedx")) for n in names), names
    lock = json.loads((bundle / "airpack.json").read_text())["lock"]["tool"]
    assert lock["platform"] == "linux/amd64" and lock["pythons"] == ["3.11", "3.12", "3.13"]
    assert sorted(w["filename"] for w in lock["wheels"]) == names
    size = sum((bundle / "tool" / "wheels" / n).stat().st_size for n in names)
    print(f"tool/ wheels linux/amd64: {len(names)} files, {size / 1e6:.1f} MB")
    assert airpack("verify", bundle, "--key", keys.ecdsa.pub).returncode == 0


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_wheel_sets_resolve_for_every_python(built: Callable[..., Path], tmp_path: Path, platform: str) -> None:
    """pip, offline, resolves airpack from tool/wheels alone for 3.11-3.13 with a glibc 2.28 host's tags; an
    arm64 bundle carries no x86_64 wheel (and the reverse)."""
    bundle = built("amd64") if platform == "linux/amd64" else built("arm64", {"platform": "linux/arm64"})
    other = "aarch64" if platform == "linux/amd64" else "x86_64"
    names = wheels(bundle)
    assert not [n for n in names if other in n], names
    if platform == "linux/arm64":
        print(f"tool/ wheels linux/arm64: {len(names)} files, "
              f"{sum((bundle / 'tool/wheels' / n).stat().st_size for n in names) / 1e6:.1f} MB")
    tags = [f"--platform={t}" for t in platform_tags(platform)]
    env = {**BARE, "PATH": os.environ["PATH"]}
    for py in ("3.11", "3.12", "3.13"):
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-index", "--find-links",
                               str(bundle / "tool" / "wheels"), "--only-binary=:all:", "--implementation", "cp",
                               "--python-version", py, *tags, "--dest", str(tmp_path / py),
                               f"airpack=={__version__}"], capture_output=True, text=True, env=env, timeout=300,
                              check=False)
        assert proc.returncode == 0, (py, proc.stdout[-2000:], proc.stderr[-2000:])
        got = {p.name for p in (tmp_path / py).iterdir()}
        assert got <= set(names)
        assert not [n for n in got if "-cp3" in n and f"cp{py.replace('.', '')}" not in n and "abi3" not in n]


def test_install_offline_then_far_side_commands(built: Callable[..., Path], keys, tmp_path: Path) -> None:
    """dash, no network, no index, Debian's python3 (no ensurepip needed): install, verify, then the far-side
    verbs run from that copy without the build-only packages."""
    bundle = built("amd64")
    prefix = tmp_path / "opt" / "airpack" / "tool"  # parents are made too
    t0 = time.monotonic()
    proc = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(prefix)])
    took = time.monotonic() - t0
    print(f"offline install from the bundle: {took:.1f} s")
    assert proc.returncode == 0, proc.stderr
    # install.sh's own lines on stderr; the closing `airpack verify` puts its result on stdout
    assert "signature and every tool/ file verified" in proc.stderr and "OK test-model 1.0.0" in proc.stdout
    assert took < 60
    py = prefix / "bin" / "python"
    check = ("import importlib, importlib.util\n"
             f"assert [m for m in {BUILD_ONLY!r} if importlib.util.find_spec(m)] == []\n"
             f"for m in {FAR_SIDE_MODULES!r}: importlib.import_module(m)\n")
    assert subprocess.run([str(py), "-c", check], capture_output=True, text=True, env=BARE, timeout=120,
                          check=False).stderr == ""
    far = prefix / "bin" / "airpack"

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(far), *map(str, args)], capture_output=True, text=True, env=BARE, timeout=300,
                              check=False)

    assert run("verify", bundle, "--key", keys.ecdsa.pub).returncode == 0
    assert run("verify", bundle, "--key", keys.foreign_ecdsa.pub).returncode == 3
    assert run("split", bundle, "--key", keys.ecdsa.pub, "--size", "100MB", "--out", tmp_path / "media"
               ).returncode == 0
    vols = sorted((tmp_path / "media").iterdir())
    joined = run("join", *vols, "--key", keys.ecdsa.pub, "--out", tmp_path / "carried")
    assert joined.returncode == 0, joined.stderr
    plan = run("plan", _plan_spec(tmp_path), "--gpus", "1", "--vram", "8", "--json")  # vLLM needs a GPU
    assert plan.returncode == 0 and json.loads(plan.stdout)["data"]["fits"], plan.stdout
    gguf_plan = run("plan", _plan_spec(tmp_path, gguf=True), "--gpus", "0", "--vram", "8")
    assert gguf_plan.returncode == 2 and "needs the gguf package" in gguf_plan.stderr, gguf_plan.stderr
    doctor = run("doctor", bundle)
    assert "python" in doctor.stdout and "installs with" in doctor.stdout, doctor.stdout + doctor.stderr  # the report
    for args in (("status", "--prefix", tmp_path / "none"), ("uninstall", "--prefix", tmp_path / "none"),
                 ("rollback", "--prefix", tmp_path / "none"), ("load", bundle, "--key", keys.ecdsa.pub),
                 ("push", bundle, "--key", keys.ecdsa.pub, "--registry", "127.0.0.1:9"),
                 ("install", bundle, "--key", keys.ecdsa.pub, "--prefix", tmp_path / "p")):
        out = run(*args)
        assert "internal error" not in out.stderr and "ModuleNotFoundError" not in out.stderr, (args, out.stderr)
    again = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(prefix)])
    assert again.returncode == 1 and "--upgrade" in again.stderr and (prefix / "bin" / "airpack").exists()
    upgraded = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(prefix),
                        "--upgrade"], sh_name="busybox")
    assert upgraded.returncode == 0, upgraded.stderr


def _plan_spec(tmp_path: Path, *, gguf: bool = False) -> Path:
    """A spec the far side can plan: a safetensors Llama-style model, or the real SmolLM2 GGUF."""
    from tests.conftest import find_smollm2_gguf, make_small_model, spec_text
    from tests.unit.plan_helpers import Arch

    folder = tmp_path / ("plan-gguf" if gguf else "plan-model")
    if gguf:
        folder.mkdir()
        try:
            (folder / "model.gguf").hardlink_to(find_smollm2_gguf())
        except OSError:
            shutil.copyfile(find_smollm2_gguf(), folder / "model.gguf")
    else:
        make_small_model(folder)
        cfg = Arch(hidden=64, layers=2, heads=4, kv_heads=4, ffn=128, vocab=256, max_position=2048).config()
        (folder / "config.json").write_text(json.dumps(cfg))
    spec = tmp_path / f"{folder.name}.yaml"
    spec.write_text(spec_text(str(folder), runtime={"engine": "llamacpp" if gguf else "vllm"}))
    return spec


def test_install_from_volume_one(built: Callable[..., Path], keys, tmp_path: Path) -> None:
    """split keeps tool/ whole in volume 1, and volume 1 alone bootstraps airpack (busybox sh)."""
    bundle = built("amd64")
    tool_bytes = sum(p.stat().st_size for p in (bundle / "tool").rglob("*") if p.is_file())
    root_bytes = sum((bundle / n).stat().st_size for n in ("SHA256SUMS", "airpack.json")) + 4096 + 64 * 1024
    size = tool_bytes + root_bytes + 320 * 40 + 200_000  # room for tool/ and the small files, not the 1 MiB model
    airpack("split", bundle, "--key", keys.ecdsa.pub, "--size", size, "--out", tmp_path / "media")
    vols = sorted((tmp_path / "media").iterdir())
    assert len(vols) == 2
    listed = sorted(p.relative_to(vols[0]).as_posix() for p in (vols[0] / "tool").rglob("*") if p.is_file())
    assert listed == sorted(p.relative_to(bundle).as_posix() for p in (bundle / "tool").rglob("*") if p.is_file())
    prefix = tmp_path / "airpack"
    proc = offline([str(vols[0]), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(prefix)],
                   sh_name="busybox")
    assert proc.returncode == 0, proc.stderr
    assert "volume 1 of 2" in proc.stdout  # the closing `airpack verify` of the volume, on stdout


@pytest.fixture
def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A '--python' that leaves a mark when anything runs it (so a test sees whether Python ran)."""
    mark = tmp_path / "python-ran"
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    fake.chmod(0o755)
    return fake, mark


def _copy(bundle: Path, dst: Path) -> Path:
    shutil.copytree(bundle, dst)
    return dst


@pytest.mark.parametrize("shell", ["dash", "busybox"])
@pytest.mark.parametrize("case", ["flipped-wheel-byte", "foreign-key", "missing-signature", "unlisted-tool-file",
                                  "missing-tool-file", "symlink-in-tool"])
def test_bad_input_exits_3_before_python(built: Callable[..., Path], keys, tmp_path: Path, fake_python, case: str,
                                         shell: str) -> None:
    bundle = _copy(built("amd64"), tmp_path / "bundle")
    key = keys.ecdsa.pub
    airpack_wheel = next((bundle / "tool" / "wheels").glob("airpack-*.whl"))
    if case == "flipped-wheel-byte":
        flip(airpack_wheel, airpack_wheel.stat().st_size // 2)
    elif case == "foreign-key":
        key = keys.foreign_ecdsa.pub
    elif case == "missing-signature":
        (bundle / "SHA256SUMS.sig").unlink()
    elif case == "unlisted-tool-file":
        shutil.copyfile(airpack_wheel, bundle / "tool" / "wheels" / "evil-1.0-py3-none-any.whl")
    elif case == "missing-tool-file":
        airpack_wheel.unlink()
    else:
        (bundle / "tool" / "extra.sh").symlink_to("install.sh")
    fake, mark = fake_python
    prefix = tmp_path / "prefix"
    proc = offline([str(bundle), "tool/install.sh", "--key", str(key), "--prefix", str(prefix), "--python",
                    str(fake)], sh_name=shell)
    assert proc.returncode == 3, proc.stderr
    assert not mark.exists(), "Python ran before the bundle was verified"
    assert not prefix.exists()
    assert proc.stderr.strip().splitlines()[-1].startswith("install.sh: error: ")


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_ed25519_signature_is_checked_by_openssl(built: Callable[..., Path], keys, tmp_path: Path, fake_python,
                                                 shell: str) -> None:
    """An Ed25519-signed bundle passes the script's checks (it goes on to ask the --python for its version)."""
    bundle = _copy(built("amd64"), tmp_path / "bundle")
    airpack("sign", bundle, "--key", keys.ed25519.key, "--force")  # built signed with the ECDSA key: replace it
    fake, mark = fake_python
    for key, code in ((keys.ed25519.pub, 1), (keys.foreign_ed25519.pub, 3)):
        mark.unlink(missing_ok=True)
        proc = offline([str(bundle), "tool/install.sh", "--key", str(key), "--prefix", str(tmp_path / "p"),
                        "--python", str(fake)], sh_name=shell)
        assert proc.returncode == code, proc.stderr
        assert mark.exists() is (code == 1)
        assert not (tmp_path / "p").exists()


def test_clear_line_for_each_host_problem(built: Callable[..., Path], keys, tmp_path: Path) -> None:
    """Wrong platform, no wheel for this Python, a Python too old, a prefix that is not writable or not empty."""
    arm = built("arm64", {"platform": "linux/arm64"})
    proc = offline([str(arm), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(tmp_path / "a")])
    assert proc.returncode == 1 and "is for linux/arm64, this machine is x86_64" in proc.stderr
    only312 = built("py312", {"python": ["3.12"]})
    assert json.loads((only312 / "airpack.json").read_text())["lock"]["tool"]["pythons"] == ["3.12"]
    proc = offline([str(only312), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(tmp_path / "b"),
                    "--python", "/usr/bin/python3.11"])
    assert proc.returncode == 1 and "no wheels for Python 3.11 in this bundle (it carries 3.12)" in proc.stderr
    old = tmp_path / "python-old"
    old.write_text("#!/bin/sh\necho 3.10\n")
    old.chmod(0o755)
    bundle = built("amd64")
    proc = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(tmp_path / "c"),
                    "--python", str(old)])
    assert proc.returncode == 1 and "needs 3.11 or newer" in proc.stderr
    full = tmp_path / "full"
    (full / "x").mkdir(parents=True)
    proc = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", str(full)])
    assert proc.returncode == 1 and "is not an empty folder" in proc.stderr
    proc = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix", "/proc/airpack"])
    assert proc.returncode == 1 and "cannot create" in proc.stderr
    for path in (tmp_path / "a", tmp_path / "b", tmp_path / "c"):
        assert not path.exists()
    # no openssl on PATH: one line naming the package, before anything else
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("dirname", "basename", "sha256sum", "base64", "awk", "find", "mktemp", "rm", "cut", "ls"):
        (tools / name).symlink_to(shutil.which(name) or f"/usr/bin/{name}")
    proc = subprocess.run(["/usr/bin/dash", "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix",
                           str(tmp_path / "f")], cwd=bundle, env={"PATH": str(tools)}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "openssl not found: install the openssl package" in proc.stderr, proc.stderr
    assert not (tmp_path / "f").exists()
    # pip fails (a Python whose pip cannot run): the folders the script made are removed again
    broken = tmp_path / "python-broken"
    broken.write_text('#!/bin/sh\ncase "$*" in *version_info*) echo 3.11 ;; *) exit 1 ;; esac\n')
    broken.chmod(0o755)
    proc = offline([str(bundle), "tool/install.sh", "--key", str(keys.ecdsa.pub), "--prefix",
                    str(tmp_path / "d" / "e"), "--python", str(broken)])
    assert proc.returncode == 1 and "venv failed" in proc.stderr and "removed" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_build_without_tool(tmp_path: Path, make_model: Callable[..., Path], keys) -> None:
    from tests.conftest import spec_text

    spec = tmp_path / "airpack.yaml"
    spec.write_text(spec_text(str(make_model()), target={"gpus": 0}))
    airpack("build", spec, "--out", tmp_path / "bundle", "--key", keys.ecdsa.key, "--no-tool")
    assert not (tmp_path / "bundle" / "tool").exists()
    assert "tool" not in json.loads((tmp_path / "bundle" / "airpack.json").read_text())["lock"]
    # a lock made --no-tool builds without tool/ (and says so); a lock with the tool, built --no-tool, too
    airpack("lock", spec, "--no-tool")
    proc = airpack("build", spec, "--out", tmp_path / "b2", "--key", keys.ecdsa.key)
    assert "without tool/" in proc.stdout and not (tmp_path / "b2" / "tool").exists()
    from tests.conftest import tool_wheelhouse

    airpack("lock", spec, "--tool-find-links", tool_wheelhouse())
    assert json.loads((tmp_path / "airpack.lock").read_text())["tool"]["wheels"]
    airpack("build", spec, "--out", tmp_path / "b3", "--key", keys.ecdsa.key, "--no-tool")
    assert not (tmp_path / "b3" / "tool").exists()
    assert "tool" not in json.loads((tmp_path / "b3" / "airpack.json").read_text())["lock"]


def test_install_script_is_posix_and_shellcheck_clean() -> None:
    script = REPO / "airpack" / "data" / "install.sh"
    proc = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(script)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout
    for shell in ("dash", "busybox"):
        args = [shell, "-n", str(script)] if shell == "dash" else ["busybox", "sh", "-n", str(script)]
        assert subprocess.run(args, capture_output=True, timeout=60, check=False).returncode == 0
