"""The operator's view (issue 19): help that renders, results on stdout and progress on stderr, verdicts that
match exit codes, one lock per spec, plain progress lines when stderr is not a terminal."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from airpack import __version__
from airpack.cli import app
from airpack.cli_output import PlainReporter
from airpack.units import format_size, plural
from tests.unit.plan_helpers import find_smollm2_gguf


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRPACK_CACHE", str(tmp_path / "cache"))


def cli(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def _verbs() -> list[str]:
    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("verb", _verbs())
def test_every_verb_help_renders_literally(verb: str) -> None:
    code, out, err = cli(verb, "--help")
    assert code == 0, err
    assert "internal error" not in out + err and "Traceback" not in out + err
    usage = out.splitlines()[0]
    assert usage.startswith("Usage: ") and verb in usage
    assert not re.search(r"<\w|\{\w|list\[", out), out  # placeholders read like docs: PATH, FILE, VOLUME...
    if verb == "install":
        assert "HOST[:PORT][/PREFIX]" in out  # the text that Rich read as markup, printed as written
    if verb == "join":
        assert "VOLUME..." in usage


def test_root_help_and_version() -> None:
    code, out, _ = cli("--help")
    assert code == 0 and "--version" in out and "install" in out
    assert cli("--version")[:2] == (0, f"airpack {__version__}\n")
    assert cli("version")[:2] == (0, f"airpack {__version__}\n")


def test_every_option_and_argument_has_help_text() -> None:
    group = typer.main.get_command(app)
    missing = [f"{name} {p.name}" for name, cmd in group.commands.items()  # type: ignore[attr-defined]
               for p in cmd.params if not getattr(p, "help", None)]
    assert missing == []


def test_results_on_stdout_progress_on_stderr(tmp_path: Path, small_model: Path, write_spec, keys) -> None:
    bundle = tmp_path / "bundle"
    code, out, err = cli("build", write_spec(small_model), "--out", bundle, "--key", keys.ecdsa.key)
    assert code == 0 and out.startswith(f"built {bundle}") and err == ""

    code, out, err = cli("inspect", bundle)  # `airpack inspect bundle > f` captures the description
    assert code == 0 and "not verified" in out and "config.json" in out and err == ""

    # Progress when stderr is not a terminal: plain lines (bytes, rate, ETA), never on stdout.
    code, out, err = cli("verify", bundle, "--key", keys.ecdsa.pub, env={"AIRPACK_PROGRESS_INTERVAL": "0"})
    tool = [p for p in (bundle / "tool").rglob("*") if p.is_file()]  # tool/: airpack's wheels and install.sh
    assert code == 0 and out.startswith(f"OK test-model 1.0.0: {5 + len(tool)} files"), out
    lines = err.splitlines()
    assert lines and all(line.startswith("verifying: ") for line in lines), err
    assert re.search(r"of [\d.]+ [kMG]?B \(\d+%\), [\d.]+ [kMG]?B/s, ETA \d+:\d\d$", lines[0]), lines[0]
    assert re.search(r"done in \d+:\d\d", lines[-1])

    code, out, err = cli("verify", bundle, "--key", keys.ecdsa.pub)  # default interval (5 s): quick work is quiet
    assert code == 0 and err == ""

    code, out, _ = cli("verify", bundle, "--key", keys.ecdsa.pub, "--json")
    assert json.loads(out)["ok"] is True  # --json: stdout holds the one document


def test_plain_reporter_paces_its_lines() -> None:
    now = [0.0]
    lines: list[str] = []
    rep = PlainReporter(lines.append, 5.0, clock=lambda: now[0])
    advance = rep.task("copying", 10_000_000)
    for _ in range(10):
        now[0] += 1.0
        advance(1_000_000)
    rep.done(advance)
    assert lines == ["copying: 5.00 MB of 10.0 MB (50%), 1.00 MB/s, ETA 0:05",
                     "copying: 10.0 MB of 10.0 MB (100%), 1.00 MB/s, ETA 0:00",
                     "copying: 10.0 MB done in 0:10 (1.00 MB/s)"]


def _plan_spec(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    shutil.copy(find_smollm2_gguf(), tmp_path / "model" / "m.gguf")
    spec = tmp_path / "airpack.yaml"
    spec.write_text("apiVersion: airpack/v1\nname: smol\nversion: 1.0.0\nmodel:\n  path: model\n"
                    "runtime:\n  engine: llamacpp\ntarget:\n  gpus: 0\n")
    return spec


def test_plan_that_does_not_fit_exits_non_zero(tmp_path: Path) -> None:
    spec = _plan_spec(tmp_path)
    code, out, err = cli("plan", spec, "--gpus", "0", "--vram", "0.1")
    assert code == 2 and "DOES NOT FIT" in out and err.startswith("error: the model does not fit")
    code, out, _ = cli("plan", spec, "--gpus", "0", "--vram", "0.1", "--json")
    doc = json.loads(out)
    assert code == 2 and doc["ok"] is False and doc["exitCode"] == 2 and doc["data"]["fits"] is False
    code, out, err = cli("plan", spec, "--gpus", "0", "--vram", "8")
    assert code == 0 and "FITS" in out and err == ""


def test_one_lock_per_spec(tmp_path: Path, small_model: Path, write_spec) -> None:
    qwen = write_spec(small_model, spec_path=tmp_path / "qwen.yaml", name="qwen")
    other = write_spec(small_model, spec_path=tmp_path / "airpack.yaml", name="other")
    assert cli("lock", qwen)[0] == 0 and (tmp_path / "qwen.lock").is_file()
    assert cli("lock", other)[0] == 0 and (tmp_path / "airpack.lock").is_file()  # the contract: airpack.lock
    code, out, err = cli("build", qwen, "--out", tmp_path / "b")  # finds its own lock, not the other spec's
    assert code == 0, err
    assert "qwen 1.0.0" in out


def test_sizes_have_one_style() -> None:
    assert [format_size(n) for n in (512, 16_500_000, 2_680_000_000, 115_000_000)] == [
        "512 B", "16.5 MB", "2.68 GB", "115 MB"]
    assert format_size(67_174_401, up=True) == "67.2 MB" and format_size(67_200_001, up=True) == "67.3 MB"
    assert (plural(1, "piece"), plural(2, "piece"), plural(0, "file")) == ("1 piece", "2 pieces", "0 files")


def test_flags_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    base = ("install", tmp_path / "bundle", "--key", tmp_path / "k.pub", "--prefix", prefix)
    for extra, flag in ((("--show-diff",), "--show-diff"), (("--registry", "r:5000"), "--registry"),
                        (("--apply",), "--apply"), (("--target", "compose", "--apply"), "--apply"),
                        (("--target", "systemd", "--registry", "r:5000"), "--registry")):
        code, out, err = cli(*base, *extra)
        assert code == 2 and f"error: {flag} does not apply to --target" in err, (extra, err)
        assert out == ""
    code, out, _ = cli(*base, "--target", "docker", "--show-diff", "--json")
    assert code == 2 and json.loads(out)["error"].startswith("--show-diff does not apply to --target docker")
    code, _, err = cli(*base, "--target", "podman")
    assert code == 2 and "--target 'podman' is not one of docker, compose, systemd, kubernetes" in err
    assert not prefix.exists()


def test_unknown_gpu_names_its_key_path_or_flag(tmp_path: Path) -> None:
    spec = _plan_spec(tmp_path)
    spec.write_text(spec.read_text().replace("gpus: 0", "gpus: 1\n  gpu: L5"))
    code, _, err = cli("plan", spec)
    assert code == 2 and "target.gpu: unknown GPU 'L5'" in err and "target.vram" in err and "--vram" not in err
    code, _, err = cli("lock", spec)  # lock has no --vram: the fix is the spec key
    assert code == 2 and "target.gpu: unknown GPU 'L5'" in err and "set target.vram" in err
    code, _, err = cli("plan", spec, "--gpu", "L5")
    assert code == 2 and "--gpu: unknown GPU 'L5'" in err and "--vram GIB" in err


def test_status_text_shows_docker_health_and_the_latest_smoke_test(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from airpack.cli.far_side import _render_status
    from airpack.install.host import InstallState
    from airpack.install.results import StatusReport

    smoke = {"ok": True, "completionTokens": 12, "ttftSeconds": 0.2, "tokensPerSecond": 30.0,
             "at": "2026-12-02T18:00:05Z"}
    st = InstallState(name="m", version="1.0.0", digest="d" * 64, key_fingerprint="SHA256:k", target="docker",
                      endpoint="http://127.0.0.1:8000/v1", container_id="c", container_name="airpack-m",
                      image_id="sha256:i", image_tags=(), bind="127.0.0.1", port=8000, network="host",
                      api_key_file=None, installed="2026-12-01T00:00:00Z", smoke=smoke)
    r = StatusReport(prefix="/p", state=st, container={"status": "running", "health": "unhealthy"},
                     health_status=200, health_body="", active="1.0.0-d", previous=None, pending=None, versions=())
    _render_status(r)
    out, err = capsys.readouterr()
    assert "healthy (airpack's probe)" in out and "running (Docker health: unhealthy)" in out and err == ""
    assert "last smoke test: ok, 12 tokens" in out and "(2026-12-02T18:00:05Z)" in out
    _render_status(dataclasses.replace(r, container={"status": "running", "health": None}))
    assert "(no Docker health check)" in capsys.readouterr().out


def test_model_only_bundle_on_an_empty_prefix_is_refused_without_an_engine(
        built_bundle, small_model: Path, keys, tmp_path: Path) -> None:
    bundle = built_bundle(small_model, key=keys.ecdsa)  # no runtime: a model update
    prefix = tmp_path / "prefix"
    code, out, err = cli("install", bundle, "--key", keys.ecdsa.pair.public_path, "--prefix", prefix)
    assert code == 2 and out == ""
    assert "test-model 1.0.0 is a model-only bundle (a model update), and no test-model runs at this prefix" in err
    assert not list(prefix.glob("versions/*"))  # nothing installed; no engine was needed to say so
    code, out, err = cli("install", bundle, "--key", keys.ecdsa.pair.public_path, "--prefix", prefix,
                         "--target", "compose")
    assert code == 2 and "--target compose does not take one" in err
