"""``airpack render``: the deploy files an install would write, rendered for a host into a new folder, with no
other side effect; and the refusal of an API key for a runtime that has none (Ollama).

The bundles are real (built and verified from a small model) and given a runtime and signed-looking deploy
files by hand (an image pinned by hand: nothing is fetched), as in test_install_pipeline. No engine, no sockets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from airpack.bundle_layout import Entry
from airpack.cli import app
from airpack.deploy import render_for_bundle
from airpack.errors import RefusedError, UsageError
from airpack.install import InstallOptions, install, model_update, pipeline, targets, versions
from airpack.install.render_files import RenderOptions, render
from airpack.lock import Lock, LockedImage
from airpack.spec import parse_spec
from airpack.verify import VerifiedBundle, verify_bundle
from tests.unit.render_helpers import check_compose_schema, check_docker_compose, check_kubernetes

CONFIG = "sha256:" + "c" * 64
MANIFEST = "sha256:" + "a" * 64
IMAGES = {"vllm": "vllm/vllm-openai", "ollama": "ollama/ollama"}


@pytest.fixture(scope="module")
def built(built_bundle: Any, make_model: Any, keys: Any) -> Path:
    return Path(built_bundle(make_model(), key=keys.ecdsa, name="m"))


@pytest.fixture(scope="module")
def verified(built: Path, keys: Any) -> VerifiedBundle:
    return verify_bundle(built, [keys.ecdsa.public])


def with_runtime(vb: VerifiedBundle, folder: Path, engine: str = "vllm", deploy: Any = None,
                 target: dict[str, Any] | None = None) -> VerifiedBundle:
    """A copy of the bundle at ``folder`` with a runtime and its deploy files (``deploy``: compose, systemd,
    kubernetes); ``target`` fields replace the spec's."""
    shutil.copytree(vb.path, folder)
    m = vb.manifest
    repo = IMAGES[engine]
    image = LockedImage(ref=f"{repo}@{MANIFEST}", repository=repo, digest=MANIFEST, config_digest=CONFIG,
                        platform="linux/amd64")
    spec = {**m.spec, "runtime": {"engine": engine, "image": f"{repo}:v1"},
            "deploy": deploy or ["compose", "systemd", "kubernetes"],
            "target": {**(m.spec.get("target") or {}), **(target or {})}}
    lock_doc: dict[str, Any] = {**m.lock, "images": [image.to_dict()]}
    if engine == "ollama":  # one GGUF file to serve
        model = dict(lock_doc["model"])
        model["files"] = [{**model["files"][0], "path": "m.gguf"}, *model["files"][1:]]
        lock_doc["model"] = model
    entry = {"role": "runtime", "repository": repo, "manifestDigest": MANIFEST, "configDigest": CONFIG,
             "airpackTag": f"airpack.local/{repo}:aaaaaaaaaaaa"}
    files = render_for_bundle(parse_spec(spec, folder, check_paths=False), Lock.from_dict(lock_doc), [entry])
    entries = []
    for rel, data in sorted(files.items()):
        (folder / "deploy" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "deploy" / rel).write_bytes(data)
        entries.append(Entry(f"deploy/{rel}", len(data), hashlib.sha256(data).hexdigest(), "deploy"))
    manifest = dataclasses.replace(m, spec=spec, lock=lock_doc, images=(entry,), files=(*m.files, *entries))
    return dataclasses.replace(vb, path=folder, manifest=manifest)


@pytest.fixture(scope="module")
def vllm(verified: VerifiedBundle, tmp_path_factory: pytest.TempPathFactory) -> VerifiedBundle:
    return with_runtime(verified, tmp_path_factory.mktemp("rt") / "bundle")


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _planned(vb: VerifiedBundle, options: InstallOptions) -> dict[str, bytes]:
    """What install renders for these options (the plan, before the host is touched)."""
    target = targets.get(options.target)
    return pipeline._plan(vb, options, target, options.prefix.absolute(), model_update.runtime_for(vb, None)).rendered


@pytest.mark.parametrize("target", ["compose", "systemd"])
def test_render_writes_what_install_plans(tmp_path: Path, vllm: VerifiedBundle, target: str) -> None:
    prefix = tmp_path / "p"
    options = RenderOptions(target=target, out=tmp_path / "out", port=8123, bind="127.0.0.2", network="bridge",
                            prefix=prefix)
    r = render(vllm, options)
    written = _tree(tmp_path / "out")
    assert list(r.files) == sorted(written)
    assert written == _planned(vllm, InstallOptions(prefix=prefix, target=target, port=8123, bind="127.0.0.2",
                                                   network="bridge"))
    assert r.to_dict()["target"] == target and r.api_key_file == str(prefix / "secrets" / "api-key")
    assert not prefix.exists()  # no prefix, no state
    if target == "compose":
        doc = check_compose_schema(written["compose.yaml"])
        assert "127.0.0.2:8123" in json.dumps(doc)
        check_docker_compose(written["compose.yaml"], tmp_path)


def test_kubernetes_render_equals_the_files_an_install_writes(tmp_path: Path, vllm: VerifiedBundle) -> None:
    prefix, registry = tmp_path / "p", "reg.local:5000/ai"
    r = render(vllm, RenderOptions(target="kubernetes", out=tmp_path / "out", registry=registry, prefix=prefix))
    written = _tree(tmp_path / "out")
    assert all(rel.startswith("kubernetes/") for rel in r.files)
    for data in written.values():
        check_kubernetes(data)
    assert registry.encode() in written["kubernetes/deployment.yaml"]
    assert b"m-api-key" in written["kubernetes/deployment.yaml"]  # the Secret by name, never its value
    install(vllm, InstallOptions(prefix=prefix, target="kubernetes", registry=registry))  # writes files only
    vid = versions.version_id(vllm.manifest.version, vllm.sums_sha256)
    installed = _tree(versions.version_dir(prefix, vid) / "deploy")
    assert installed.pop("kubernetes/secret-api-key.yaml")  # install's generated key: render writes none
    assert written == installed


def test_flags_that_do_not_apply_and_a_used_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match="--registry does not apply to --target compose"):
        RenderOptions(target="compose", out=tmp_path / "o", registry="reg.local")
    with pytest.raises(UsageError, match="needs --registry"):
        RenderOptions(target="kubernetes", out=tmp_path / "o")
    with pytest.raises(UsageError, match="writes no deploy files"):
        RenderOptions(target="docker", out=tmp_path / "o")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(RefusedError, match="not empty"):
        RenderOptions(target="compose", out=tmp_path / "used")
    RenderOptions(target="compose", out=tmp_path / "empty")  # new: fine


def test_cli_refuses_a_used_out_folder_and_a_tampered_bundle_writes_nothing(
    tmp_path: Path, built: Path, keys: Any
) -> None:
    pub = str(keys.ecdsa.pair.public_path)
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep").write_text("x")
    res = CliRunner().invoke(app, ["render", str(built), "--key", pub, "--target", "compose", "--out", str(used),
                                   "--json"])
    assert res.exit_code == 2, res.output
    assert json.loads(res.stdout)["ok"] is False
    res = CliRunner().invoke(app, ["render", str(built), "--key", pub, "--target", "compose", "--out",
                                   str(tmp_path / "o"), "--registry", "reg.local"])
    assert res.exit_code == 2
    bad = tmp_path / "bad"
    shutil.copytree(built, bad)
    weight = bad / "model" / "model.safetensors"
    data = bytearray(weight.read_bytes())
    data[-1] ^= 1
    weight.write_bytes(bytes(data))
    res = CliRunner().invoke(app, ["render", str(bad), "--key", pub, "--target", "compose", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 3, res.output
    assert not (tmp_path / "o").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")] == []


def test_a_model_only_bundle_has_nothing_to_render(tmp_path: Path, verified: VerifiedBundle) -> None:
    with pytest.raises(RefusedError, match="model-only"):
        render(verified, RenderOptions(target="compose", out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


OLLAMA = "Ollama has no API key of its own: {} with --no-api-key and put an authenticating proxy in front of it"


def test_ollama_needs_no_api_key_at_render_and_install(tmp_path: Path, verified: VerifiedBundle) -> None:
    vb = with_runtime(verified, tmp_path / "bundle", "ollama")
    with pytest.raises(RefusedError, match=OLLAMA.format("render")) as exc:
        render(vb, RenderOptions(target="compose", out=tmp_path / "o"))
    assert exc.value.exit_code == 2 and not (tmp_path / "o").exists()
    prefix = tmp_path / "p"
    with pytest.raises(RefusedError, match=OLLAMA.format("install")):
        install(vb, InstallOptions(prefix=prefix, target="kubernetes", registry="reg.local"))
    assert not versions.version_dir(prefix, versions.version_id(vb.manifest.version, vb.sums_sha256)).exists()
    r = render(vb, RenderOptions(target="compose", out=tmp_path / "o", api_key=False))
    assert "compose.yaml" in r.files and r.api_key_file is None


def test_cli_json_names_the_target_and_the_files(tmp_path: Path, vllm: VerifiedBundle,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import airpack.cli.render_cmd as cmd

    monkeypatch.setattr(cmd, "_verified", lambda bundle, keys, reporter: vllm)  # the verified bundle, as given
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["render", str(vllm.path), "--key", "k.pub", "--target", "systemd", "--out",
                                   str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)["data"]
    assert data["target"] == "systemd"
    assert data["files"] == sorted(_tree(out)) == ["systemd/airpack-m.container", "systemd/airpack-m.service"]
