"""Start the real simulator in a subprocess and talk to it over real HTTP with ``requests``.

One server per test session (reset before every test) keeps the suite quick; tests about the
command line, start-up and persistence start their own with :func:`start_sim`.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

START_TIMEOUT_S = 20.0


@dataclass
class SimServer:
    """A running simulator process and the ways a test talks to it."""

    process: subprocess.Popen[str]
    base_url: str
    token: str
    prefix: str = "/api/v1"
    admin_prefix: str = "/_sim"
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    http: requests.Session = field(default_factory=requests.Session)

    def edge_url(self, endpoint: str) -> str:
        return f"{self.base_url}{self.prefix}/edge/{endpoint}"

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.http.request(
            method, f"{self.base_url}{self.admin_prefix}{path}", headers=headers, timeout=10, **kwargs
        )

    def admin_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.admin(method, path, **kwargs)
        assert reply.status_code in (200, 201), (reply.status_code, reply.text)
        return reply.json()

    def create_machine(self, **fields: Any) -> dict[str, Any]:
        return self.admin_ok("POST", "/machines", json=fields)

    def edge(
        self,
        endpoint: str,
        key: str | None,
        *,
        json_body: Any = None,
        files: Any = None,
        data: Any = None,
        timeout: float = 10,
    ) -> requests.Response:
        """A fresh connection per call, so a dropped connection never poisons the next request."""
        headers = {"Accept": "application/json"}
        if key is not None:
            headers["X-RVM-API-KEY"] = key
        with requests.Session() as session:
            return session.post(
                self.edge_url(endpoint),
                headers=headers,
                json=json_body,
                files=files,
                data=data,
                timeout=timeout,
            )

    def wait_for_line(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the simulator never logged the expected event")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty as exc:
                raise AssertionError("the simulator never logged the expected event") from exc
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if predicate(event):
                return event

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=15)


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def launch(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rvm_platform_sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def start_sim(
    tmp: Path,
    *,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    db: Path | None = None,
    token_arg: bool = True,
) -> SimServer:
    """Run ``python -m rvm_platform_sim --port 0`` and wait for its ``listening`` log line.

    ``token_arg=False`` leaves out ``--admin-token-file`` (the token then comes from ``env``).
    """
    token_file = tmp / "admin-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_hex(24) + "\n")
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(db or tmp / "sim.sqlite3"),
        *(["--admin-token-file", str(token_file)] if token_arg else []),
        *(extra_args or []),
    ]
    process = launch(args, env)
    server = SimServer(process=process, base_url="", token=token_file.read_text().strip())
    threading.Thread(target=_pump, args=(process.stdout, server.lines), daemon=True).start()
    try:
        event = server.wait_for_line(lambda e: e.get("event") == "listening", START_TIMEOUT_S)
    except AssertionError:
        process.kill()
        raise
    server.base_url = f"http://127.0.0.1:{event['port']}"
    server.prefix = event["prefix"]
    server.admin_prefix = event["admin_prefix"]
    return server


@pytest.fixture(scope="session")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimServer]:
    server = start_sim(tmp_path_factory.mktemp("sim"))
    yield server
    server.stop()


@pytest.fixture
def sim(shared_sim: SimServer) -> SimServer:
    """The shared server with nothing in it: no machines, no records, no faults."""
    shared_sim.admin_ok("POST", "/reset", json={})
    return shared_sim


@pytest.fixture
def machine(sim: SimServer) -> dict[str, Any]:
    return sim.create_machine(name="RVM Mall A")


# --- images -----------------------------------------------------------------------------------


def png_bytes(width: int = 4, height: int = 3, seed: int = 0) -> bytes:
    """A real, decodable RGB PNG built with zlib (no imaging library needed)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    rows = b"".join(
        b"\x00" + bytes((x * 40 + y * 7 + seed) % 256 for x in range(width) for _ in range(3))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(size: int = 64, seed: int = 0) -> bytes:
    """Bytes that start and end like a JFIF JPEG: what content sniffing (and finfo) looks at."""
    body = bytes((i * 31 + seed) % 256 for i in range(max(0, size - 22)))
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9"


class Images:
    """The image builders, handed to tests as a fixture (tests never import conftest)."""

    png = staticmethod(png_bytes)
    jpeg = staticmethod(jpeg_bytes)


@pytest.fixture
def images() -> type[Images]:
    return Images


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., SimServer]]:
    """Start dedicated servers (own database, own flags); all are stopped after the test."""
    started: list[SimServer] = []

    def factory(**kwargs: Any) -> SimServer:
        server = start_sim(tmp_path, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def deposit_form() -> Callable[..., dict[str, Any]]:
    """Multipart parts for a valid deposit; keyword arguments override or remove (None) parts."""

    def build(**overrides: Any) -> dict[str, Any]:
        parts: dict[str, Any] = {
            "image": ("item.jpg", jpeg_bytes(), "image/jpeg"),
            "status": (None, "ACCEPTED"),
            "data": (
                None,
                json.dumps({"deposit_id": "7f1c0c52-4f7e-4c1e-9d55-1a2b3c4d5e6f", "class": "bottle"}),
            ),
            "session_id": (None, "session-42"),
        }
        for name, value in overrides.items():
            if value is None:
                parts.pop(name, None)
            else:
                parts[name] = value
        return parts

    return build
