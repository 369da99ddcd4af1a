"""A stand-in for Discord's REST API on 127.0.0.1: each path answers what the test says."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT = {"id": "1100000000000000001", "username": "vqbot-test"}
APP = {"id": "1100000000000000002", "name": "vqbot test app"}
GUILDS = [{"id": "1", "name": "Banana Temple"}, {"id": "2", "name": "Chocolate Bar"}]
HAPPY = {"/api/v10/users/@me": (200, BOT), "/api/v10/oauth2/applications/@me": (200, APP),
         "/api/v10/users/@me/guilds": (200, GUILDS)}


@contextmanager
def discord_standin(routes: dict[str, tuple[int, object]]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server answering ``routes`` (path -> status, JSON body); yields its API base and the requests' headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls it by this name
            seen.append(dict(self.headers))
            status, body = routes.get(self.path.split("?")[0], (404, {"message": "404: Not Found", "code": 0}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v10", seen
    finally:
        server.shutdown()
        server.server_close()


def closed_port_base() -> str:
    """An API base on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v10"


UNRESOLVABLE_BASE = "http://discord.invalid/api/v10"  # .invalid never resolves (RFC 6761)
