"""Errors an operator can act on (issue 19, item 9): a registry that cannot be reached is one line naming the
host and the cause, over a real loopback connection to a port nothing listens on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airpack.cli import app
from airpack.oci.neterr import short_cause


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_unreachable_registry_is_one_line(tmp_path: Path, gguf_model: Path, write_spec,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRPACK_CACHE", str(tmp_path / "cache"))
    port = _closed_port()
    spec = write_spec(gguf_model, spec_path=tmp_path / "airpack.yaml",
                      runtime={"engine": "llamacpp", "image": f"127.0.0.1:{port}/llm/engine:1"},
                      target={"gpus": 0, "vram": "4GiB"})
    result = CliRunner().invoke(app, ["lock", str(spec)])
    assert result.exit_code == 1, result.stderr
    assert result.stderr == f"error: 127.0.0.1:{port}: cannot reach the registry (connection refused)\n"
    assert result.stdout == ""


def test_short_cause_of_a_real_refused_connection() -> None:
    import requests

    with pytest.raises(requests.RequestException) as exc:
        requests.get(f"http://127.0.0.1:{_closed_port()}/v2/", timeout=5)
    assert short_cause(exc.value) == "connection refused"
    assert len(str(exc.value)) > 150  # what the message used to carry
