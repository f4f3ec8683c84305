"""The command line: exit codes, the ``--json`` envelope, keygen/build/sign/verify/inspect end to end, and
fingerprints that match what OpenSSL computes from the public key."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack import __version__
from airpack.cli import app

ENVELOPE_KEYS = {"airpackResultVersion", "command", "ok", "exitCode", "data", "problems", "error"}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRPACK_CACHE", str(tmp_path / "cache"))


def cli(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def cli_json(*args: object, env: dict[str, str] | None = None) -> tuple[int, dict]:
    code, out, _ = cli(*args, "--json", env=env)
    doc = json.loads(out)
    assert set(doc) == ENVELOPE_KEYS
    assert doc["airpackResultVersion"] == 1 and doc["exitCode"] == code and doc["ok"] is (code == 0)
    assert (doc["error"] is None) is (code == 0)
    return code, doc


def openssl_fingerprint(pub: Path) -> str:
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(pub), "-outform", "DER"], capture_output=True,
                         check=True, timeout=30).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


def printed_fingerprints(text: str) -> list[str]:
    return re.findall(r"sha256:[0-9a-f]{64}", text)


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_keygen(tmp_path: Path, algorithm: str) -> None:
    code, out, err = cli("keygen", "--out", tmp_path / "k", "--algorithm", algorithm)
    assert code == 0, err
    key, pub = tmp_path / "k" / "airpack.key", tmp_path / "k" / "airpack.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert printed_fingerprints(out) == [openssl_fingerprint(pub)]  # the result: stdout
    assert "mode 0600" in out

    before = key.read_bytes()
    code, doc = cli_json("keygen", "--out", tmp_path / "k", "--algorithm", algorithm)
    assert code == 2 and "refusing to overwrite" in doc["error"]
    assert key.read_bytes() == before

    code, doc = cli_json("keygen", "--out", tmp_path / "k", "--name", "second")
    assert code == 0 and doc["command"] == "keygen"
    assert doc["data"]["fingerprint"] == openssl_fingerprint(tmp_path / "k" / "second.pub")


def test_keygen_with_a_passphrase(tmp_path: Path, small_model: Path, write_spec) -> None:
    env = {"KEYPASS": "s3cret"}
    code, _, err = cli("keygen", "--out", tmp_path / "k", "--passphrase-env", "KEYPASS", env=env)
    assert code == 0, err
    key = tmp_path / "k" / "airpack.key"
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    spec = write_spec(small_model)
    code, doc = cli_json("build", spec, "--out", tmp_path / "b", "--key", key)
    assert code == 2 and "the key is encrypted; pass --passphrase-env" in doc["error"]
    assert not (tmp_path / "b").exists()
    code, doc = cli_json("build", spec, "--out", tmp_path / "b", "--key", key, "--passphrase-env", "KEYPASS",
                         env=env)
    assert code == 0 and doc["data"]["signed_by"] == openssl_fingerprint(tmp_path / "k" / "airpack.pub")
    code, doc = cli_json("keygen", "--out", tmp_path / "k2", "--passphrase-env", "UNSET_VAR_X")
    assert code == 2 and "UNSET_VAR_X" in doc["error"]


def test_unsigned_build_then_sign_then_verify(tmp_path: Path, small_model: Path, write_spec) -> None:
    cli("keygen", "--out", tmp_path / "k")
    key, pub = tmp_path / "k" / "airpack.key", tmp_path / "k" / "airpack.pub"
    fpr = openssl_fingerprint(pub)
    out = tmp_path / "bundle"
    code, stdout, _ = cli("build", write_spec(small_model), "--out", out)
    tool = [p for p in (out / "tool").rglob("*") if p.is_file()]  # tool/: airpack's wheels and install.sh
    assert code == 0 and "UNSIGNED (run 'airpack sign')" in stdout and f"{5 + len(tool)} files" in stdout
    assert not (out / "SHA256SUMS.sig").exists()

    code, doc = cli_json("verify", out, "--key", pub)
    assert code == 3 and [(p["kind"], p["path"]) for p in doc["problems"]] == [("unsigned", "SHA256SUMS.sig")]

    sums = (out / "SHA256SUMS").read_bytes()
    code, stdout, _ = cli("sign", out, "--key", key)
    assert code == 0 and printed_fingerprints(stdout) == [fpr]
    assert (out / "SHA256SUMS").read_bytes() == sums

    code, stdout, _ = cli("verify", out, "--key", pub)
    assert code == 0 and stdout.startswith("OK test-model 1.0.0: ") and printed_fingerprints(stdout) == [fpr]
    code, doc = cli_json("verify", out, "--key", pub)
    assert code == 0 and doc["problems"] == [] and doc["data"]["key_fingerprint"] == fpr
    tool = [p for p in (out / "tool").rglob("*") if p.is_file()]  # tool/: airpack's wheels and install.sh
    assert len(tool) > 3 and doc["data"]["files"] == 5 + len(tool)
    assert doc["data"]["sums_sha256"] == hashlib.sha256(sums).hexdigest()


def test_sign_refuses_an_inconsistent_bundle(tmp_path: Path, small_model: Path, write_spec) -> None:
    cli("keygen", "--out", tmp_path / "k")
    out = tmp_path / "bundle"
    assert cli("build", write_spec(small_model), "--out", out)[0] == 0
    (out / "model" / "config.json").write_text("{}")
    code, doc = cli_json("sign", out, "--key", tmp_path / "k" / "airpack.key")
    assert code == 3 and "refusing to sign" in doc["error"]
    assert [(p["kind"], p["path"]) for p in doc["problems"]] == [("modified", "model/config.json")]
    assert not (out / "SHA256SUMS.sig").exists()


def test_out_exists_needs_force(tmp_path: Path, small_model: Path, write_spec, keys) -> None:
    spec, out = write_spec(small_model), tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, doc = cli_json("build", spec, "--out", out)
    assert code == 2 and "already exists" in doc["error"] and "--force" in doc["error"]
    assert (out / "keep.txt").read_text() == "mine"
    code, doc = cli_json("build", spec, "--out", out, "--force", "--key", keys.ecdsa.key)
    assert code == 0 and doc["data"]["signed_by"] == keys.ecdsa.pair.fingerprint
    assert not (out / "keep.txt").exists() and (out / "SHA256SUMS.sig").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # old copy removed
    code, doc = cli_json("build", spec, "--out", tmp_path / "no" / "such" / "dir")
    assert code == 2 and "no such folder" in doc["error"]


def test_build_json_and_inspect(tmp_path: Path, small_model: Path, write_spec, keys) -> None:
    out = tmp_path / "bundle"
    code, doc = cli_json("build", write_spec(small_model), "--out", out, "--key", keys.ed25519.key)
    assert code == 0 and doc["command"] == "build"
    data = doc["data"]
    tool = [p.stat().st_size for p in (out / "tool").rglob("*") if p.is_file()]  # airpack's wheels, install.sh
    # 3 model files + SBOM + tool/ + airpack.json: every file SHA256SUMS lists, as verify counts them
    assert (data["name"], data["version"], data["files"]) == ("test-model", "1.0.0", 5 + len(tool))
    assert data["bytes"] == (sum(p.stat().st_size for p in small_model.iterdir())
                             + (out / "sbom/bom.cdx.json").stat().st_size + sum(tool))
    assert data["sums_sha256"] == hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()

    code, doc = cli_json("inspect", out)
    assert code == 0 and doc["data"]["verified"] is False and doc["data"]["signed"] is True
    assert {f["path"] for f in doc["data"]["model"]["files"]} == {"config.json", "model.safetensors",
                                                                   "tokenizer.json"}
    code, stdout, _ = cli("inspect", out)
    assert code == 0 and "not verified" in stdout
    code, doc = cli_json("inspect", tmp_path)
    assert code == 2 and "not an airpack bundle" in doc["error"]


def test_verify_failure_in_text_mode_lists_problems(tmp_path: Path, small_model: Path, write_spec, keys) -> None:
    out = tmp_path / "bundle"
    assert cli("build", write_spec(small_model), "--out", out, "--key", keys.ecdsa.key)[0] == 0
    (out / "model" / "config.json").write_text("{}")
    (out / "model" / "extra.bin").write_text("x")
    code, stdout, err = cli("verify", out, "--key", keys.ecdsa.pub)
    assert code == 3 and stdout == ""
    assert re.search(r"modified\s+model/config.json", err) and re.search(r"extra\s+model/extra.bin", err)
    assert err.strip().splitlines()[-1].startswith("error: ")
    code, doc = cli_json("verify", out, "--key", keys.foreign_ecdsa.pub)
    assert code == 3 and [(p["kind"], p["path"]) for p in doc["problems"]] == [("bad-signature",
                                                                                 "SHA256SUMS.sig")]
    code, doc = cli_json("verify", out, "--key", tmp_path / "missing.pub")
    assert code == 2 and "cannot read key" in doc["error"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cli("verify", tmp_path)[0] == 2  # --key is required
    assert cli("build")[0] == 2
    assert cli("no-such-command")[0] == 2
    assert cli("keygen", "--out", tmp_path, "--algorithm", "rsa")[0] == 2


def test_version() -> None:
    assert cli("version")[:2] == (0, f"airpack {__version__}\n")
