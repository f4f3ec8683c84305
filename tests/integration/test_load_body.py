"""What the engine receives from ``airpack load``: one request with an exact ``Content-Length`` (not chunked,
which would copy every block once more) whose body is the docker-archive, byte for byte.

The engine is a small HTTP server on 127.0.0.1 speaking just enough of ``POST /images/load``.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from airpack.oci.archive import ArchiveEntry, DockerArchive
from airpack.oci.engine_load import _load
from airpack.oci.layout import OciLayout
from tests.layout_helpers import make_image, make_layer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class _Engine(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length else b""
        self.seen.append({"path": self.path, "length": length, "te": self.headers.get("Transfer-Encoding"),
                          "body": body})
        out = json.dumps({"stream": "Loaded image\n"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Engine", (_Engine,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{server.server_address[1]}", version="1.41")
    try:
        yield client, seen
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_the_archive_goes_with_an_exact_content_length(engine, tmp_path: Path) -> None:
    client, seen = engine
    layout = OciLayout.create(tmp_path / "layout")
    layer, _ = make_layer("data/blob.bin", os.urandom(10_000_000))  # several 4 MiB blocks, two buffers
    locked = make_image(layout, "reg.example/t/img:1", [layer])
    entries = [ArchiveEntry(layout.find(locked), ("x:1",))]
    _load(layout, entries, client, None)
    (req,) = seen
    assert req["path"].split("?")[0].endswith("/images/load") and "quiet=True" in req["path"]
    assert req["te"] is None and int(req["length"]) == len(req["body"])
    assert req["body"] == b"".join(bytes(b) for b in DockerArchive(layout, entries))
