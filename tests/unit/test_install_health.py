"""The smoke test's stream parsing and timing, from recorded SSE lines (no sockets)."""

from __future__ import annotations

import json

import pytest

from airpack.errors import HealthError
from airpack.install.health import read_stream, wait_healthy


def chunk(content: str | None, **extra: object) -> bytes:
    event = {"choices": [{"index": 0, "delta": {"content": content}}], **extra}
    return b"data: " + json.dumps(event).encode() + b"\n"


def test_llamacpp_stream_with_usage() -> None:
    lines = [(b": keep-alive\n", 0.01), (chunk(None), 0.20), (b"\n", 0.2), (chunk("Hello"), 0.25),
             (chunk(" there"), 0.30), (b'data: {"choices":[],"usage":{"completion_tokens":3}}\n', 0.45),
             (b"data: [DONE]\n", 0.46)]
    r = read_stream(lines, 200)
    assert r.ok and r.text == "Hello there" and r.completion_tokens == 3
    assert r.ttft_s == 0.20 and r.latency_s == 0.46
    assert r.tokens_per_s == pytest.approx(3 / (0.46 - 0.25))
    assert r.to_dict()["ttftSeconds"] == 0.2


def test_without_usage_content_chunks_are_counted() -> None:
    r = read_stream([(chunk("a"), 0.1), (chunk("b"), 0.2), (b"data: [DONE]\n", 0.3)], 200)
    assert r.ok and r.completion_tokens == 2


@pytest.mark.parametrize(("lines", "why"), [
    ([(b"data: [DONE]\n", 0.1)], "without generating text"),
    ([(chunk("   "), 0.1), (b"data: [DONE]\n", 0.2)], "without generating text"),
    ([(b'data: {"error":{"message":"context exceeded"}}\n', 0.1)], "context exceeded"),
    ([(b"data: {not json\n", 0.1)], "not JSON"),
])
def test_failures(lines: list[tuple[bytes, float]], why: str) -> None:
    r = read_stream(lines, 200)
    assert not r.ok and why in (r.error or "")


def test_dead_engine_stops_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("airpack.install.health.probe", lambda url, timeout=2.0: (503, "Loading model"))
    monkeypatch.setattr("airpack.install.health.time.sleep", lambda s: None)
    events: list[str] = []
    with pytest.raises(HealthError, match="exited"):
        wait_healthy("http://127.0.0.1:1/health", timeout=60, alive=lambda: "the engine exited (code 1)",
                     on_event=events.append)
    assert events == ["waiting for http://127.0.0.1:1/health: HTTP 503: Loading model"]
