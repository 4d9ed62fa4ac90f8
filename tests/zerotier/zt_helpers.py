"""Shared pieces of the ZeroTier tests: a seeded Central double on a free loopback port and a small
HTTP client (a unique module name so it never collides with another test directory's helpers)."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab" / "zerotier_central"))

from zt_central_double import CentralState, serve  # noqa: E402

TOKEN = "lab-token-0123456789abcdef"
OTHER_TOKEN = "other-user-token-fedcba9876543210"
CONTROLLER_TOKEN = "authtoken-secret-abcdefghij"
NWID = "8056c2e21c000001"
NWID2 = "8056c2e21c000002"
FOREIGN_NWID = "1234567890abcdef"
NOW_MS = int(time.time() * 1000)


def seed() -> dict[str, Any]:
    """Two lab networks owned by the lab user, one owned by someone else."""
    return {
        "tokens": {TOKEN: "lab-user", OTHER_TOKEN: "other-user"},
        "controller_token": CONTROLLER_TOKEN,
        "networks": [
            {
                "id": NWID,
                "owner": "lab-user",
                "name": "rvm-lab",
                "pool_start": "10.147.17.10",
                "pool_end": "10.147.17.250",
                "routes": ["10.147.17.0/24"],
                "members": [
                    {
                        "nodeId": "a1b2c3d4e5",
                        "name": "rvm-lab-01",
                        "description": "site=berlin",
                        "authorized": True,
                        "ipAssignments": ["fd80:56c2:e21c::1", "10.147.17.11"],
                        "tags": [[1000, 1]],
                        "lastSeen": NOW_MS,
                    },
                    {
                        "nodeId": "b1b2c3d4e5",
                        "name": "rvm-lab-02",
                        "description": "site=hamburg",
                        "authorized": True,
                        "ipAssignments": ["10.147.17.12"],
                        "lastSeen": NOW_MS - 3 * 3600 * 1000,
                    },
                    {
                        "nodeId": "c1b2c3d4e5",
                        "name": "",
                        "authorized": False,
                        "ipAssignments": [],
                        "lastSeen": NOW_MS,
                    },
                    {
                        "nodeId": "d1b2c3d4e5",
                        "name": "rvm-lab-04",
                        "description": "site=berlin",
                        "authorized": True,
                        "ipAssignments": ["10.147.17.14"],
                        "lastSeen": 0,
                    },
                ],
            },
            {
                "id": NWID2,
                "owner": "lab-user",
                "name": "rvm-servers",
                "members": [
                    {
                        "nodeId": "e1b2c3d4e5",
                        "name": "rvm-monitor",
                        "description": "role=monitor",
                        "authorized": True,
                        "ipAssignments": ["10.148.0.5"],
                    }
                ],
            },
            {"id": FOREIGN_NWID, "owner": "other-user", "name": "not-ours", "members": []},
        ],
    }


class Double:
    """A running double: its state (for direct inspection) and its base URL."""

    def __init__(self, rate_limit: float = 20) -> None:
        self.state = CentralState(seed(), rate_limit=rate_limit)
        self.server = serve(self.state)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; returns (status, parsed JSON body or raw text, headers)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), dict(exc.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


def unwrap(value: Any) -> Any:
    """ansible-inventory marks untrusted strings as {"__ansible_unsafe": s}; the plain value."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def wait_for(condition: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
