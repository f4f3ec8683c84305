"""Wait for an engine to be healthy, then prove it answers: one streamed chat completion, timed.

HTTP goes through ``http.client`` to the loopback (or bind) address directly: no proxy variables apply, and
nothing but the engine is contacted. The SSE parsing is a pure function (:func:`read_stream`) so it is tested
without sockets.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from airpack.errors import HealthError
from airpack.progress import Event

SMOKE_PROMPT = "Reply with one short sentence: what is an air-gapped network?"
SMOKE_MAX_TOKENS = 32


def _conn(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise HealthError(f"{url}: only plain http on a local address is probed")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    return conn, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def probe(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    """``(HTTP status, short body)`` of a GET, or ``(None, why)`` when nothing answered."""
    conn, path = _conn(url, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(300).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__
    finally:
        conn.close()


def wait_healthy(url: str, *, timeout: float, alive: Callable[[], str | None],
                 on_event: Event | None = None) -> float:
    """Poll ``url`` until it answers 200; returns the seconds waited.

    ``alive()`` returns why the engine stopped (then waiting is pointless), or None. llama.cpp answers 503
    while it loads; others refuse connections until ready. Polls fast at first: small models load in well
    under a second.
    """
    start = time.monotonic()
    delay, n, last = 0.05, 0, ""
    while True:
        status, body = probe(url)
        waited = time.monotonic() - start
        if status == 200:
            return waited
        now = f"HTTP {status}: {body[:80]}" if status else f"no answer ({body})"
        if on_event and now != last:
            on_event(f"waiting for {url}: {now}")
        last = now
        n += 1
        if n % 4 == 0 and (why := alive()):
            raise HealthError(f"{why} before {url} became healthy (last: {now})")
        if waited > timeout:
            raise HealthError(f"{url} not healthy after {timeout:.0f} s (last: {now})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


@dataclass(frozen=True)
class SmokeResult:
    """One timed chat completion. Seconds are measured from sending the request."""

    ok: bool
    status: int | None
    latency_s: float
    ttft_s: float | None
    completion_tokens: int
    tokens_per_s: float | None
    text: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "latencySeconds": round(self.latency_s, 4),
                "ttftSeconds": None if self.ttft_s is None else round(self.ttft_s, 4),
                "completionTokens": self.completion_tokens,
                "tokensPerSecond": None if self.tokens_per_s is None else round(self.tokens_per_s, 2),
                "text": self.text, "error": self.error, "prompt": SMOKE_PROMPT}


def read_stream(lines: Iterable[tuple[bytes, float]], status: int) -> SmokeResult:
    """Fold an OpenAI SSE stream (``(line, seconds since the request)``) into a :class:`SmokeResult`.

    Time to first token is the first ``data:`` chunk; tokens are ``usage.completion_tokens`` when the engine
    reports usage, else the content chunks counted.
    """
    first = first_content = last = None
    text: list[str] = []
    chunks = 0
    usage: int | None = None
    error = None
    for raw, t in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        first = t if first is None else first
        last = t
        if data == b"[DONE]":
            break
        try:
            event = json.loads(data)
        except ValueError:
            error = f"not JSON: {data[:80]!r}"
            break
        if isinstance(event, dict) and event.get("error"):
            error = str(event["error"])[:300]
            break
        for choice in event.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                text.append(str(piece))
                chunks += 1
                first_content = t if first_content is None else first_content
        if isinstance(event.get("usage"), dict) and event["usage"].get("completion_tokens") is not None:
            usage = int(event["usage"]["completion_tokens"])
    tokens = usage if usage is not None else chunks
    latency = last or 0.0
    gen_time = (latency - first_content) if first_content is not None else 0.0
    tps = tokens / gen_time if tokens and gen_time > 0 else None
    body = "".join(text)
    if error is None and status != 200:
        error = f"HTTP {status}"
    if error is None and (not body.strip() or tokens <= 0):
        error = "the engine answered without generating text"
    return SmokeResult(error is None, status, latency, first, tokens, tps, body, error)


def smoke_test(base: str, model: str, api_key: str | None, *, timeout: float = 120.0) -> SmokeResult:
    """POST one streamed ``/v1/chat/completions`` with a fixed prompt; time it."""
    conn, _ = _conn(base, timeout)
    body = json.dumps({
        "model": model, "messages": [{"role": "user", "content": SMOKE_PROMPT}], "max_tokens": SMOKE_MAX_TOKENS,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
    }).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.monotonic()
    try:
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            detail = resp.read(500).decode("utf-8", "replace").strip()
            return SmokeResult(False, resp.status, time.monotonic() - start, None, 0, None, "",
                               f"HTTP {resp.status}: {detail}")

        def lines() -> Iterable[tuple[bytes, float]]:
            while line := resp.readline():
                yield line, time.monotonic() - start

        return read_stream(lines(), resp.status)
    except (OSError, http.client.HTTPException) as exc:
        return SmokeResult(False, None, time.monotonic() - start, None, 0, None, "",
                           f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
