"""Shared fixtures for the download/catalog/convert tests: a local HTTP file server
and tiny checkpoint/config files built on the spot.

Import the fixtures you use into the test module:
``from tests.engine.conftest_download import file_server``.
"""

from __future__ import annotations

import io
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml


@dataclass
class Route:
    """How the server answers one path.

    ``status`` other than 200 answers every request with that error.
    ``ranges=False`` ignores Range headers (always 200 with the whole body).
    ``cut_after``/``cuts``: the next ``cuts`` responses stop after ``cut_after``
    body bytes and drop the connection. ``stall`` sleeps before answering.
    """

    data: bytes
    status: int = 200
    ranges: bool = True
    cut_after: int | None = None
    cuts: int = 0
    stall: float = 0.0


@dataclass(frozen=True)
class Served:
    """A request the server saw: its path, Range header and answer status."""

    path: str
    range: str | None
    status: int


@dataclass
class FileServer:
    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Served] = field(default_factory=list)

    def add(self, path: str, data: bytes, **behaviour: object) -> str:
        """Serve ``data`` at ``path`` (behaviour as in ``Route``) and return its URL."""
        self.routes[path] = Route(data, **behaviour)  # type: ignore[arg-type]
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def requests_for(self, path: str) -> list[Served]:
        return [r for r in self.requests if r.path == path]


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str], body: bytes, cut_after: int | None) -> None:
            server.requests.append(Served(self.path, self.headers.get("Range"), status))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if cut_after is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[:cut_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

        def do_GET(self) -> None:
            route = server.routes.get(self.path)
            if route is None:
                server.requests.append(Served(self.path, self.headers.get("Range"), 404))
                self.send_error(404)
                return
            if route.stall:
                time.sleep(route.stall)
            if route.status != 200:
                server.requests.append(Served(self.path, self.headers.get("Range"), route.status))
                self.send_error(route.status)
                return
            data = route.data
            cut_after = None
            if route.cuts > 0 and route.cut_after is not None:
                route.cuts -= 1
                cut_after = route.cut_after
            requested = self.headers.get("Range")
            if route.ranges and requested and requested.startswith("bytes=") and requested.endswith("-"):
                start = int(requested.removeprefix("bytes=").removesuffix("-"))
                if start >= len(data):
                    headers = {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"}
                    self._answer(416, headers, b"", None)
                    return
                body = data[start:]
                headers = {
                    "Content-Length": str(len(body)),
                    "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                    "Accept-Ranges": "bytes",
                }
                self._answer(206, headers, body, cut_after)
                return
            headers = {"Content-Length": str(len(data))}
            if route.ranges:
                headers["Accept-Ranges"] = "bytes"
            self._answer(200, headers, data, cut_after)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up early (size checks, timeouts) are expected here."""


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """An HTTP server on 127.0.0.1 serving in-memory files (see ``FileServer.add``)."""
    state = FileServer(base_url="")
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="test-file-server", daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def refused_url(path: str = "/file") -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


MiB = 1 << 20


def folder_listing(dest: Path) -> list[str]:
    """The names of the files beside ``dest`` (what a download left in its folder)."""
    return sorted(p.name for p in dest.parent.iterdir())


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def checkpoint_bytes(*, legacy: bool = False, padding: int = 0) -> bytes:
    """A tiny taming-like checkpoint as torch.save writes it (zip, or the legacy pickle format).

    ``padding`` adds a uint8 tensor of that many bytes, to make the file bigger.
    """
    state = {
        "encoder.conv_in.weight": torch.randn(4, 3, 3, 3),
        "decoder.conv_out.weight": torch.randn(3, 4, 3, 3),
        "quantize.embedding.weight": torch.randn(16, 4),
        "loss.discriminator.main.0.weight": torch.randn(2, 3, 4, 4),
    }
    if padding:
        state["loss.padding"] = torch.zeros(padding, dtype=torch.uint8)
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "epoch": 1}, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def config_bytes(*, n_embed: int = 16384, ddconfig: bool = True) -> bytes:
    """A taming model config (YAML) with ``model.params.ddconfig`` unless told otherwise."""
    params: dict[str, object] = {"embed_dim": 256, "n_embed": n_embed}
    if ddconfig:
        params["ddconfig"] = {"z_channels": 256, "resolution": 256, "ch": 128, "ch_mult": [1, 1, 2, 2, 4]}
    config = {"model": {"target": "taming.models.vqgan.VQModel", "params": params}}
    return yaml.safe_dump(config).encode()
