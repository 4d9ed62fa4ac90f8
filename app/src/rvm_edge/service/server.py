"""The device's HTTP server: health, readiness, metrics, a token-protected status API and dashboard.

Standard library ``ThreadingHTTPServer``: one thread per request, so a slow dashboard client
can never hold up ``/healthz``, and ``/healthz`` does no I/O at all (it must answer in well
under 50 ms while the pipeline saturates the CPU).

``/healthz``, ``/readyz`` and ``/metrics`` need no token: the deploy's health gate reads the
first two on loopback, the monitoring server scrapes ``/metrics`` on the management address
(where only it may connect: the firewall's allow-list), and none of them carries a secret.
Everything else (``/``, ``/api/*``) needs the token: ``Authorization: Bearer <token>``, or the
HttpOnly cookie the login form sets (a browser cannot send a bearer header on navigation).
Nothing is loaded from a CDN.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs

from rvm_edge.service.dashboard import DASHBOARD_HTML

log = logging.getLogger(__name__)
COOKIE = "rvm_edge_token"

LOGIN_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>rvm-edge</title></head>
<body style="font-family:sans-serif;margin:3em"><h1>rvm-edge</h1>
<form method="post" action="/login"><label>Dashboard token <input type="password" name="token"
autofocus></label> <button>Open</button></form></body></html>"""


class ServiceView(Protocol):
    """What the server reads from the running service (all cheap, no blocking I/O for /healthz)."""

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def status(self) -> dict[str, Any]: ...

    def metrics(self) -> bytes: ...

    def last_frame_jpeg(self) -> bytes | None: ...


GIL_SWITCH_INTERVAL_S = 0.001


def favour_responsiveness() -> None:
    """Hand the GIL over every 1 ms instead of 5 ms: a request thread waiting behind the
    pipeline's Python code answers sooner (the pipeline's heavy work releases the GIL anyway)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


WORKER_NICE = 10


def lower_worker_priority() -> None:
    """Run the calling thread, and every thread it starts later, at nice +10 (Linux: per thread).

    Called on the main thread after the HTTP server's threads exist and before models load, so
    the inference thread pools and pipeline stages inherit it and ``/healthz`` keeps answering
    in milliseconds while they saturate the CPU.
    """
    with contextlib.suppress(AttributeError, OSError):  # not Linux / not allowed: same priority
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICE))


# How often an idle serve loop wakes to look for a stop: rarely (issue 17: an idle device should
# not wake for nothing); stop() wakes it at once with a connection instead.
POLL_S = 30.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s", format % args)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, default=str).encode(), "application/json")

    def _authorized(self) -> bool:
        token = self.server.token
        if not token:
            return False
        auth = self.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not given:
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == COOKIE:
                    given = value
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        view = self.server.view
        try:
            if path == "/healthz":
                self._json(200, {"alive": True})
            elif path == "/readyz":
                ready, body = view.readiness()
                self._json(200 if ready else 503, body)
            elif path == "/metrics":
                self._send(200, view.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif not self._authorized():  # everything but the open paths above needs the token
                if path == "/":
                    self._send(401, LOGIN_PAGE, "text/html; charset=utf-8")
                else:
                    self._json(401, {"error": "token required (Authorization: Bearer <token>)"})
            elif path in ("/", "/api/status", "/api/frame.jpg"):
                if path == "/":
                    self._send(200, self.server.dashboard, "text/html; charset=utf-8")
                elif path == "/api/status":
                    self._json(200, view.status())
                else:
                    jpeg = view.last_frame_jpeg()
                    if jpeg is None:
                        self._send(204, b"", "image/jpeg")
                    else:
                        self._send(200, jpeg, "image/jpeg")
            else:
                self._json(404, {"error": f"no such path {path}"})
        except Exception:
            log.exception("http handler failed", extra={"path": path})
            self._json(500, {"error": "internal error (see the service log)"})

    def do_POST(self) -> None:
        if self.path != "/login":
            if self._authorized():
                self._json(404, {"error": "no such path"})
            else:
                self._json(401, {"error": "token required (Authorization: Bearer <token>)"})
            return
        length = min(int(self.headers.get("Content-Length") or 0), 4096)
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        token = self.server.token
        if token and given and hmac.compare_digest(given.encode(), token.encode()):
            cookie = f"{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/"
            self._send(303, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})
        else:
            self._send(401, LOGIN_PAGE, "text/html; charset=utf-8")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    view: ServiceView
    token: str | None
    dashboard: bytes


class _Server6(_Server):
    address_family = socket.AF_INET6


class HttpServer:
    """Serves on ``port`` of every address in ``bind`` (one string or several), each from its own
    background thread, all with the same handler and token; ``port`` 0 picks a free port on the
    first address and uses it on the rest (tests).

    Several addresses, not a wildcard: loopback for the health gate and local tools, the
    management address for the monitoring server, and nothing on the other interfaces.
    An address that cannot be bound raises :class:`OSError` naming it, with nothing left listening.
    """

    def __init__(self, bind: str | Sequence[str], port: int, view: ServiceView, token: str | None) -> None:
        addresses = [bind] if isinstance(bind, str) else list(bind)
        if not addresses:
            raise ValueError("HttpServer needs at least one address")
        self._servers: list[_Server] = []
        try:
            for host in addresses:
                server = self._listen(host, port)
                port = int(server.server_address[1])
                server.view, server.token = view, token
                server.dashboard = DASHBOARD_HTML.encode()
                self._servers.append(server)
        except OSError:
            for server in self._servers:
                server.server_close()
            raise
        self._threads = [
            threading.Thread(target=srv.serve_forever, args=(POLL_S,), name=f"rvm-http-{i}", daemon=True)
            for i, srv in enumerate(self._servers)
        ]

    @staticmethod
    def _listen(host: str, port: int) -> _Server:
        server_class = _Server6 if ":" in host else _Server
        try:
            return server_class((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None

    @property
    def port(self) -> int:
        return int(self._servers[0].server_address[1])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(str(s.server_address[0]), int(s.server_address[1])) for s in self._servers]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop serving and close the sockets (also when never started: ``shutdown`` would wait
        for a serve loop that does not exist)."""
        for server, thread in zip(self._servers, self._threads, strict=True):
            if thread.is_alive():
                closer = threading.Thread(target=server.shutdown, name="rvm-http-stop", daemon=True)
                closer.start()
                while closer.is_alive():  # the serve loop sleeps POLL_S: a connection wakes it now
                    _nudge(server)
                    closer.join(0.05)
            server.server_close()


def _nudge(server: _Server) -> None:
    host, port = server.server_address[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        pass
