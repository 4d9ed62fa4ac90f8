"""Start a simulator for another project's tests (the rvm-edge client tests use this).

Standard library only, so importing it adds no test dependency::

    from rvm_platform_sim.testing import start_simulator

    with start_simulator(tmp_path) as sim:
        machine = sim.admin("POST", "/machines", {"name": "RVM Lab 1"})
        client = PlatformClient(base_url=sim.edge_base_url, api_key=machine["api_key"])
        ...
        assert len(sim.admin("GET", "/deposits")) == 10

The server runs in a subprocess (``python -m rvm_platform_sim --port 0``), so it can be killed,
restarted on the same database, or left to fail independently of the test process.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

START_TIMEOUT_S = 20.0
EXITED = "_process_exited"  # put on the event queue when the process's output ends


class AdminError(Exception):
    """An admin API call that did not answer 2xx: carries the status and the decoded body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"admin API answered {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class RunningSimulator:
    """A simulator process: its URLs, its admin token, its log lines (parsed JSON events)."""

    process: subprocess.Popen[str]
    token: str
    db_path: Path
    base_url: str = ""
    prefix: str = "/api/v1"
    admin_prefix: str = "/_sim"
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    @property
    def edge_base_url(self) -> str:
        """What a device is configured with, e.g. ``http://127.0.0.1:41234/api/v1``."""
        return f"{self.base_url}{self.prefix}"

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """Call the admin API (``path`` after the prefix); the decoded JSON reply, or AdminError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}{self.admin_prefix}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                raw = reply.read()
                if reply.headers.get_content_type() != "application/json":
                    return raw
                return json.loads(raw)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                decoded: Any = json.loads(payload)
            except ValueError:
                decoded = payload.decode(errors="replace")
            raise AdminError(exc.code, decoded) from exc

    def wait_for_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The next log event matching ``predicate``; TimeoutError when none comes in time."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if predicate(event):
                return event
        raise TimeoutError(f"no matching simulator log event within {timeout} s")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and wait; the exit status (0 on a clean stop)."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the platform vanishes mid-request, as in a crash."""
        self.process.kill()
        self.process.wait(timeout=15)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process.poll() is None:
            self.kill()


def _pump(process: subprocess.Popen[str], events: queue.Queue[dict[str, Any]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "unparsed", "line": line.rstrip("\n")}
        events.put(event if isinstance(event, dict) else {"event": "unparsed", "line": line})
    events.put({"event": EXITED})


def start_simulator(
    workdir: Path,
    *,
    db_path: Path | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    token: str | None = None,
    token_arg: bool = True,
    timeout: float = START_TIMEOUT_S,
) -> RunningSimulator:
    """Start ``rvm-platform-sim`` on 127.0.0.1 and a free port; return once it is listening.

    ``workdir`` holds the admin token file (reused when present) and, unless ``db_path`` says
    otherwise, the database. ``token_arg=False`` leaves ``--admin-token-file`` out (then the
    token comes from ``$CREDENTIALS_DIRECTORY`` in ``env``).
    """
    token_file = workdir / "admin-token"
    if token is not None or not token_file.exists():
        token_file.write_text((token or secrets.token_hex(24)) + "\n")
    db = db_path or workdir / "sim.sqlite3"
    args = [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(db),
        *(["--admin-token-file", str(token_file)] if token_arg else []),
        *(extra_args or []),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "rvm_platform_sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    sim = RunningSimulator(process=process, token=token_file.read_text().strip(), db_path=db)
    threading.Thread(target=_pump, args=(process, sim.events), daemon=True).start()
    try:
        ready = sim.wait_for_event(lambda e: e.get("event") in ("listening", EXITED), timeout)
    except TimeoutError:
        sim.kill()
        raise
    if ready["event"] == EXITED:
        raise RuntimeError(f"rvm-platform-sim exited with status {process.wait()} before listening")
    sim.base_url = f"http://127.0.0.1:{ready['port']}"
    sim.prefix = ready["prefix"]
    sim.admin_prefix = ready["admin_prefix"]
    return sim
