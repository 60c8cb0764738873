"""A local Discord webhook stand-in and a local SMTP sink, both on 127.0.0.1."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.booking.conftest import book, lab  # noqa: F401  (fixtures shared with these tests)


@dataclass
class Webhook:
    """Records what was posted to it; answers with the queued status codes, then 204."""

    url: str
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """JSON bodies posted to one path."""
        return [body for p, body in self.posts if p == path]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                hook.posts.append((self.path, body))
                status = hook.answers.pop(0) if hook.answers else 204
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@dataclass
class Sink:
    """Messages an SMTP client handed over: sender, recipients, raw data."""

    port: int
    mails: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    sink = Sink(port=0)

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, text: str) -> None:
            self.wfile.write(text.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 sink ESMTP")
            mail: dict[str, Any] = {"from": None, "to": [], "data": ""}
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                command = line.decode(errors="replace").strip()
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "EHLO":
                    self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                elif verb == "MAIL":
                    mail = {"from": command.split(":", 1)[1].strip(), "to": [], "data": ""}
                    self.reply("250 OK")
                elif verb == "RCPT":
                    mail["to"].append(command.split(":", 1)[1].strip().strip("<>"))
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 go ahead")
                    chunks = []
                    while (data := self.rfile.readline()) not in (b".\r\n", b""):
                        chunks.append(data.decode(errors="replace"))
                    mail["data"] = "".join(chunks)
                    sink.mails.append(mail)
                    self.reply("250 queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
