"""Start the real simulator in a subprocess and talk to it over real HTTP with ``requests``.

One server per test session (reset before every test) keeps the suite quick; tests about the
command line, start-up and persistence start their own with :func:`start_sim`.
"""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from rvm_platform_sim.testing import RunningSimulator, start_simulator


@dataclass
class SimServer:
    """A running simulator (see :mod:`rvm_platform_sim.testing`) plus ``requests`` helpers."""

    sim: RunningSimulator
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def process(self) -> subprocess.Popen[str]:
        return self.sim.process

    @property
    def base_url(self) -> str:
        return self.sim.base_url

    @property
    def token(self) -> str:
        return self.sim.token

    @property
    def prefix(self) -> str:
        return self.sim.prefix

    @property
    def admin_prefix(self) -> str:
        return self.sim.admin_prefix

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

    def stop(self) -> int:
        return self.sim.stop()


def start_sim(tmp: Path, **kwargs: Any) -> SimServer:
    return SimServer(sim=start_simulator(tmp, **kwargs))


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
        server = start_sim(tmp_path, db_path=kwargs.pop("db", None), **kwargs)
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
