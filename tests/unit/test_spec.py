"""Spec validation through the CLI: every rule exits 2 with one line that names the key path, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.errors import SpecError
from airpack.spec import load_spec, parse_spec

BASE = """\
apiVersion: airpack/v1
name: demo
version: 1.0.0
model:
  path: model
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"\0" * 64)
    return tmp_path


def lock_cli(spec: Path) -> tuple[int, str]:
    """``airpack lock SPEC`` in-process; returns the exit code and stderr."""
    from airpack.cli import app

    result = CliRunner().invoke(app, ["lock", str(spec)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


CASES = {
    # name: (spec text, text the one-line error must contain)
    "unknown-key-suggestion": (BASE + "  pth: model\n", "model.pth: unknown key; did you mean 'path'?"),
    "unknown-top-key": (BASE + "modle: {}\n", "modle: unknown key; did you mean 'model'?"),
    "unknown-runtime-key": (BASE + "runtime:\n  engine: vllm\n  prot: 8000\n",
                            "runtime.prot: unknown key; did you mean 'port'?"),
    "gpus-not-int": (BASE + "target:\n  gpus: two\n", "target.gpus: must be an integer, got a string"),
    "gpus-bool": (BASE + "target:\n  gpus: true\n", "target.gpus: must be an integer, got a boolean"),
    "gpus-negative": (BASE + "target:\n  gpus: -1\n", "target.gpus: must be >= 0, got -1"),
    "files-not-list": (BASE + "  files: 3\n", "model.files: must be a list of strings, got an integer"),
    "files-item": (BASE + "  files: ['*.gguf', 3]\n", "model.files[1]: must be a non-empty string"),
    "allow-pickle-str": (BASE + "  allowPickle: 'yes'\n", "model.allowPickle: must be true or false, got a string"),
    "target-not-mapping": (BASE + "target: big\n", "target: must be a mapping, got a string"),
    "model-not-mapping": (BASE.replace("model:\n  path: model\n", "model: [model]\n"),
                          "model: must be a mapping, got a list"),
    "port-range": (BASE + "runtime:\n  engine: vllm\n  port: 70000\n", "runtime.port: must be a TCP port"),
    "memory-fraction": (BASE + "runtime:\n  engine: vllm\n  memoryFraction: 2\n",
                        "runtime.memoryFraction: must be a number in (0, 1]"),
    "env-name": (BASE + "runtime:\n  engine: vllm\n  env:\n    1BAD: x\n",
                 "runtime.env: '1BAD' is not a valid environment variable name"),
    "env-value": (BASE + "runtime:\n  engine: vllm\n  env:\n    GOOD: [x]\n",
                  "runtime.env.GOOD: must be a string or number, got a list"),
    "vram": (BASE + "target:\n  vram: lots\n", "target.vram: must be GiB per GPU"),
    "driver": (BASE + "target:\n  driver: latest\n", "target.driver: must be an NVIDIA driver version"),
    "platform": (BASE + "target:\n  platform: linux/arm\n",
                 "target.platform: 'linux/arm' is not valid; did you mean 'linux/arm64'?"),
    "images-not-list": (BASE + "dependencies:\n  images: 3\n", "dependencies.images: must be a list of strings"),
    "dependencies-key": (BASE + "dependencies:\n  image: [x]\n",
                         "dependencies.image: unknown key; did you mean 'images'?"),
    "path-and-repo": (BASE + "  repo: org/model\n", "model: give either 'path'"),
    "neither-path-nor-repo": (BASE.replace("  path: model\n", "  files: ['*']\n"), "model: needs 'path'"),
    "missing-folder": (BASE.replace("path: model", "path: nowhere"), "model.path: folder"),
    "revision-with-path": (BASE + "  revision: main\n", "model.revision: only applies to a Hugging Face 'repo'"),
    "bad-repo-id": (BASE.replace("path: model", "repo: 'not a repo!'"),
                    "model.repo: 'not a repo!' is not a Hugging Face repo id"),
    "bad-name": (BASE.replace("name: demo", "name: My_Model"), "name: 'My_Model' must match"),
    "name-too-long": (BASE.replace("name: demo", "name: " + "a" * 64), "name: 'aaaa"),
    "name-not-string": (BASE.replace("name: demo", "name: [demo]"), "name: must be a non-empty string, got a list"),
    "bad-version": (BASE.replace("version: 1.0.0", "version: '1.0'"), "version: '1.0' is not a semantic version"),
    "bad-version-float": (BASE.replace("version: 1.0.0", "version: 1.0"), "version: '1.0' is not a semantic"),
    "bad-engine": (BASE + "runtime:\n  engine: vlm\n", "runtime.engine: 'vlm' is not valid; did you mean 'vllm'?"),
    "engine-missing": (BASE + "runtime:\n  port: 8000\n", "runtime.engine: is required"),
    "custom-no-image": (BASE + "runtime:\n  engine: custom\n  port: 8000\n  health: /health\n",
                        "runtime.image: is required when engine is 'custom'"),
    "custom-no-port": (BASE + "runtime:\n  engine: custom\n  image: x/y:1\n  health: /health\n",
                       "runtime.port: is required when engine is 'custom'"),
    "custom-no-health": (BASE + "runtime:\n  engine: custom\n  image: x/y:1\n  port: 8000\n",
                         "runtime.health: is required when engine is 'custom'"),
    "custom-health-path": (BASE + "runtime:\n  engine: custom\n  image: x/y:1\n  port: 8000\n  health: health\n",
                           "runtime.health: must be an HTTP path starting with '/'"),
    "health-not-custom": (BASE + "runtime:\n  engine: vllm\n  health: /health\n",
                          "runtime.health: only applies to engine 'custom'"),
    "duplicate-key": (BASE + "name: other\n", "line 6: duplicate key 'name'"),
    "duplicate-nested-key": (BASE + "  path: model\n", "line 6: duplicate key 'path'"),
    "unhashable-key": (BASE + "? [a, b]\n: c\n", "line 6: a key must be a plain word, not a list"),
    "invalid-yaml": (BASE + "runtime: {engine: vllm\n", "line 7, column 1: invalid YAML"),
    "invalid-yaml-indent": (BASE + "  files:\n - x\n", "invalid YAML"),
    "unknown-api-version": (BASE.replace("airpack/v1", "airpack/v2"),
                            "apiVersion: must be 'airpack/v1', got 'airpack/v2'"),
    "missing-api-version": (BASE.replace("apiVersion: airpack/v1\n", ""), "apiVersion: is required"),
    "missing-model": ("apiVersion: airpack/v1\nname: demo\nversion: 1.0.0\n", "model: is required"),
    "deploy-without-runtime": (BASE + "deploy: [compose]\n", "deploy: needs a 'runtime'"),
    "deploy-unknown": (BASE + "runtime:\n  engine: vllm\ndeploy: [compose, kubernets]\n",
                       "deploy[1]: 'kubernets' is not valid; did you mean 'kubernetes'?"),
    "deploy-twice": (BASE + "runtime:\n  engine: vllm\ndeploy: [compose, compose]\n",
                     "deploy[1]: 'compose' is listed twice"),
    "python-tag": (BASE + "extra: !!python/object:os.system {}\n", "invalid YAML"),
    "empty": ("", "spec: must be a mapping, got nothing (null)"),
    "a-list": ("- a\n- b\n", "spec: must be a mapping, got a list"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_spec_exits_2_with_one_line(case: str, project: Path) -> None:
    text, expected = CASES[case]
    spec = project / "airpack.yaml"
    spec.write_text(text)
    code, stderr = lock_cli(spec)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {spec}: "), lines[0]
    assert expected in lines[0]
    assert not (project / "airpack.lock").exists()


def test_not_utf8_missing_and_huge_files(project: Path) -> None:
    spec = project / "airpack.yaml"
    spec.write_bytes(BASE.encode() + b"# \xff\xfe\n")
    assert lock_cli(spec) == (2, f"error: {spec}: not UTF-8 text\n")
    code, stderr = lock_cli(project / "nope.yaml")
    assert code == 2 and "no such spec file" in stderr
    spec.write_bytes(b"#" * (1024 * 1024 + 1))
    code, stderr = lock_cli(spec)
    assert code == 2 and "this is not a spec" in stderr


def test_runtime_is_optional_model_only_bundle(project: Path) -> None:
    spec = project / "airpack.yaml"
    spec.write_text(BASE)
    code, stderr = lock_cli(spec)
    assert code == 0, stderr
    assert (project / "airpack.lock").is_file()
    parsed = load_spec(spec)
    assert parsed.runtime is None and parsed.deploy == () and parsed.target.gpus == 1


@pytest.mark.parametrize("case", ["unknown-key-suggestion", "invalid-yaml", "duplicate-key", "bad-engine"])
def test_real_process_prints_one_line_and_exits_2(case: str, project: Path) -> None:
    text, expected = CASES[case]
    spec = project / "airpack.yaml"
    spec.write_text(text)
    r = subprocess.run([sys.executable, "-m", "airpack", "lock", str(spec)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: {spec}: {r.stderr.split(': ', 2)[2].strip()}"]
    assert expected in r.stderr


def test_json_envelope_for_a_bad_spec(project: Path) -> None:
    import json

    from airpack.cli import app

    spec = project / "airpack.yaml"
    spec.write_text(CASES["bad-engine"][0])
    result = CliRunner().invoke(app, ["lock", str(spec), "--json"])
    assert result.exit_code == 2
    out = json.loads(result.stdout)
    assert out == {"airpackResultVersion": 1, "command": "lock", "ok": False, "exitCode": 2, "data": None,
                   "problems": [], "error": out["error"]}
    assert "runtime.engine: 'vlm' is not valid; did you mean 'vllm'?" in out["error"]


def test_valid_full_spec_round_trips(project: Path) -> None:
    spec = project / "airpack.yaml"
    spec.write_text(BASE + textwrap.dedent("""\
          files: ['*.safetensors', config.json]
          exclude: ['*.onnx']
        runtime:
          engine: vllm
          args: [--max-model-len, '8192']
          env: {VLLM_LOGGING_LEVEL: INFO, N: 2}
          port: 8000
          context: 8192
          memoryFraction: 0.9
        target:
          gpus: 2
          gpu: L40S
          vram: 48GiB
          driver: 535.104.05
          platform: linux/arm64
        deploy: [compose, kubernetes]
        dependencies:
          images: [docker.io/library/busybox:1.36]
        """))
    s = load_spec(spec)
    assert s.model.files == ("*.safetensors", "config.json") and s.model.exclude == ("*.onnx",)
    assert s.runtime is not None and s.runtime.engine == "vllm" and s.runtime.port == 8000
    assert s.runtime.env == (("N", "2"), ("VLLM_LOGGING_LEVEL", "INFO"))
    assert (s.target.gpus, s.target.vram_gib, s.target.driver, s.target.platform) == (2, 48.0, "535.104.05",
                                                                                      "linux/arm64")
    assert s.deploy == ("compose", "kubernetes")
    assert s.model_dir == project / "model"
    assert s.digest().startswith("sha256:")


def test_digest_changes_with_content_not_with_comments(project: Path) -> None:
    base = parse_spec({"apiVersion": "airpack/v1", "name": "demo", "version": "1.0.0",
                       "model": {"path": "model"}}, project)
    same = load_spec(_write(project / "a.yaml", "# a comment\n" + BASE))
    other = load_spec(_write(project / "b.yaml", BASE + "target:\n  gpus: 2\n"))
    assert base.digest() == same.digest() != other.digest()


def test_parse_spec_raises_spec_error_with_key_path(project: Path) -> None:
    with pytest.raises(SpecError, match=r"^model\.pth: unknown key; did you mean 'path'\?$"):
        parse_spec({"apiVersion": "airpack/v1", "name": "d", "version": "1.0.0",
                    "model": {"pth": "model"}}, project)
    spec = parse_spec({"apiVersion": "airpack/v1", "name": "d", "version": "1.0.0",
                       "model": {"path": "gone"}}, project, check_paths=False)
    assert spec.model.path == "gone"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- example manifests

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def test_the_example_manifests_are_all_here() -> None:
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml")) == [
        "llama-3.1-8b-instruct-awq.yaml", "mistral-7b-instruct-tgi.yaml", "qwen2.5-7b-instruct-gguf.yaml",
        "smollm2-local.yaml"]


@pytest.mark.parametrize(("name", "engine", "repo"), [
    ("llama-3.1-8b-instruct-awq.yaml", "vllm", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"),
    ("qwen2.5-7b-instruct-gguf.yaml", "llamacpp", "Qwen/Qwen2.5-7B-Instruct-GGUF"),
    ("mistral-7b-instruct-tgi.yaml", "tgi", "mistralai/Mistral-7B-Instruct-v0.3"),
])
def test_hub_manifests_parse_without_network(name: str, engine: str, repo: str) -> None:
    import yaml

    spec = parse_spec(yaml.safe_load((MANIFESTS / name).read_text()), MANIFESTS)
    assert spec.runtime is not None and spec.runtime.engine == engine
    assert spec.model.repo == repo and spec.model.path is None
    assert spec.target.gpus == 1 and spec.deploy
    assert load_spec(MANIFESTS / name) == spec  # and through the strict loader (duplicate keys etc.)


def test_smollm2_local_manifest_parses_and_selects_the_gguf(tmp_path: Path, gguf_model: Path) -> None:
    import yaml

    from airpack.lock import lock_local

    (tmp_path / "airpack.yaml").write_bytes((MANIFESTS / "smollm2-local.yaml").read_bytes())
    (tmp_path / "smollm2-model").mkdir()
    gguf = next(gguf_model.iterdir())
    (tmp_path / "smollm2-model" / gguf.name).hardlink_to(gguf)
    (tmp_path / "smollm2-model" / "notes.txt").write_text("not selected")
    spec = parse_spec(yaml.safe_load((MANIFESTS / "smollm2-local.yaml").read_text()), tmp_path)
    assert spec.runtime is not None and spec.runtime.engine == "llamacpp" and spec.target.gpus == 0
    assert spec.model_dir == tmp_path / "smollm2-model"
    locked = lock_local(load_spec(tmp_path / "airpack.yaml"))
    assert [f.path for f in locked.files] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert locked.files[0].size == gguf.stat().st_size
    with pytest.raises(SpecError, match=r"model\.path: folder"):
        parse_spec(yaml.safe_load((MANIFESTS / "smollm2-local.yaml").read_text()), tmp_path / "elsewhere")
