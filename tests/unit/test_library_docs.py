"""docs/library.md runs: its ``python`` blocks, in order and in one namespace, in a fresh folder holding
``model/`` (a small local model the planner can read). Keys come from ``keygen``, the tool's wheels from the
local wheelhouse (tests/conftest.py), and nothing opens a socket. Also: the library's results are the CLI's
``--json`` data, and the far-side verbs import no build-only package."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack import api
from airpack.cli import app
from tests.conftest import make_small_model, safetensors_bytes
from tests.unit.plan_helpers import Arch

DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def _model(folder: Path) -> Path:
    make_small_model(folder)
    cfg = Arch(hidden=64, layers=2, heads=4, kv_heads=4, ffn=128, vocab=256, max_position=2048).config()
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRPACK_CACHE", str(tmp_path / ".cache"))
    yield tmp_path


def test_the_page_has_an_example_per_verb() -> None:
    code = "\n".join(blocks())
    for verb in ("keygen", "load_spec", "lock", "build", "sign", "verify", "split", "join", "plan", "inspect"):
        assert f"api.{verb}(" in code, verb
    text = DOC.read_text()  # the install verbs: shown (they need an engine, so they are not run here), and real
    for verb in ("install", "status", "rollback", "uninstall"):
        assert f"api.{verb}(" in text, verb
        import airpack.install

        assert getattr(api, verb) is getattr(airpack.install, verb)


def test_the_examples_run(in_tmp: Path) -> None:
    _model(in_tmp / "model")
    namespace: dict[str, object] = {"__name__": "library_docs"}
    for i, code in enumerate(blocks(), 1):
        try:
            exec(compile(code, f"{DOC.name} block {i}", "exec"), namespace)  # noqa: S102 - our own documentation
        except Exception as exc:  # noqa: BLE001 - any failure of an example: name its block
            pytest.fail(f"docs/library.md block {i} failed: {type(exc).__name__}: {exc}\n{code}")


# --------------------------------------------------------------------------- the library is the CLI's --json data


def _cli_json(*args: object, where: tuple[Path, Path] | None = None) -> dict[str, object]:
    """The ``data`` of ``airpack ARGS --json``; ``where``: (the CLI's output path, the library's) to compare."""
    r = CliRunner().invoke(app, [*map(str, args), "--json"])
    doc = json.loads(r.stdout)
    assert doc["ok"], doc
    text = json.dumps(doc["data"])
    return json.loads(text.replace(str(where[0]), str(where[1])) if where else text)  # type: ignore[no-any-return]


def test_results_are_the_json_data(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the two builds alike, byte for byte
    _model(in_tmp / "model")
    (in_tmp / "model" / "extra.safetensors").write_bytes(safetensors_bytes(64 * 1024, seed=1))  # 2 volumes
    spec = in_tmp / "airpack.yaml"
    spec.write_text("apiVersion: airpack/v1\nname: demo\nversion: 1.0.0\nmodel:\n  path: ./model\n")
    keys = api.keygen(in_tmp / "k")
    assert set(keys.to_dict()) == set(_cli_json("keygen", "--out", in_tmp / "k2"))
    pub = [keys.public_key]
    locked = api.lock(spec, tool=None)
    assert locked.to_dict() == _cli_json("lock", spec, "--no-tool")
    built = api.build(spec, in_tmp / "b1", key=Path(keys.private_key), tool=None)
    assert built.to_dict() == _cli_json("build", spec, "--out", in_tmp / "b2", "--key", keys.private_key,
                                        "--no-tool", where=(in_tmp / "b2", in_tmp / "b1"))
    assert api.verify(in_tmp / "b1", pub).to_dict() == _cli_json("verify", in_tmp / "b1", "--key", pub[0])
    assert api.inspect(in_tmp / "b1", diff=True).to_dict() == _cli_json("inspect", in_tmp / "b1")
    split = api.split(in_tmp / "b1", pub, in_tmp / "m1", size="1200KB")
    assert split.count > 1 and split.to_dict() == _cli_json(
        "split", in_tmp / "b1", "--key", pub[0], "--size", "1200KB", "--out", in_tmp / "m2",
        where=(in_tmp / "m2", in_tmp / "m1"))
    vol = api.verify(split.volumes[0].folder, pub)
    assert vol.to_dict() == _cli_json("verify", split.volumes[0].folder, "--key", pub[0])
    joined = api.join([v.folder for v in split.volumes], pub, in_tmp / "j1")
    assert joined.complete and joined.to_dict() == _cli_json(
        "join", *(v.folder for v in split.volumes), "--key", pub[0], "--out", in_tmp / "j2",
        where=(in_tmp / "j2", in_tmp / "j1"))
    planned = api.plan(spec, gpus=1, vram_gib=8)
    assert planned.to_dict() == _cli_json("plan", spec, "--gpus", "1", "--vram", "8")
    signed = api.sign(in_tmp / "j1", Path(keys.private_key), force=True, known=pub)
    assert signed.replaced == keys.fingerprint and signed.to_dict()["bundle"] == str(in_tmp / "j1")


def test_far_side_verbs_import_no_build_only_package() -> None:
    """What tests/integration/test_tool.py checks on an installed tool/, here in a subprocess that hides them."""
    code = ("import sys\nfor m in ('huggingface_hub', 'gguf', 'numpy', 'cyclonedx'): sys.modules[m] = None\n"
            "import airpack.api, airpack.cli\n"
            "assert not [m for m in ('huggingface_hub', 'gguf', 'numpy', 'cyclonedx') if sys.modules.get(m)]\n")
    env = {**os.environ, "PYTHONPATH": str(DOC.parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
