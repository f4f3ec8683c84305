"""The test image's curl shim (images/llama-server/curl), run with the static busybox the image carries, against
real loopback servers: healthy is 0, an error answer, a refused connection and a server that never answers are
non-zero, and none of them is a crash (Debian's busybox 1.35 segfaults on ``wget -T``; the shim must not use it)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SHIM = Path(__file__).resolve().parents[2] / "images" / "llama-server" / "curl"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def _probe(url: str, max_time: str = "3") -> int:
    return subprocess.run(["/bin/busybox", "sh", str(SHIM), "-fsS", "-o", "/dev/null", "--max-time", max_time, url],
                          capture_output=True, timeout=30, check=False).returncode


def test_shim_answers_like_curl_and_never_crashes(server: int) -> None:
    assert _probe(f"http://127.0.0.1:{server}/health") == 0
    bad = _probe(f"http://127.0.0.1:{server}/unhealthy")
    assert bad not in (0, 139)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert _probe(f"http://127.0.0.1:{closed}/health") not in (0, 139)


def test_shim_gives_up_at_max_time() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        start = time.monotonic()
        rc = _probe(f"http://127.0.0.1:{silent.getsockname()[1]}/health", max_time="2")
        assert rc not in (0, 139) and time.monotonic() - start < 10
