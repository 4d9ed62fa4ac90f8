"""Helpers for the rvm_health_gate tests: a scripted /readyz server, a fake clock, a scripted unit.

The server is real (http.server on 127.0.0.1, an ephemeral port, one thread), so the module's own
urllib probe is what reads it. The unit state and the clock are fakes: the clock only moves when
the gate sleeps, so a 120 s timeout runs in milliseconds and every timing is exact.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

LIBRARY = Path(__file__).resolve().parents[2] / "library"
if str(LIBRARY) not in sys.path:
    sys.path.insert(0, str(LIBRARY))

import rvm_health_gate  # noqa: E402  (needs LIBRARY on sys.path; it adds its module_utils itself)
from ansible.module_utils.rvm_health_gate_core import GateConfig, GateIO, GateResult, run_gate  # noqa: E402

UNIT = "rvm-edge"


@dataclass(frozen=True)
class Answer:
    """One scripted HTTP answer; ``declared_length`` larger than the body makes a truncated answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    declared_length: int | None = None


def readyz(
    ready: bool = True, frames: int = 3, in_flight: int | None = 0, status: int | None = None
) -> Answer:
    """A /readyz answer as the app writes it (200 when ready, 503 when not); in_flight None: no key."""
    body: dict[str, Any] = {
        "ready": ready,
        "checks": {"models_loaded": {"ok": ready, "detail": "detector"}},
        "frames_processed": frames,
        "in_flight": in_flight,
        "version": "0.1.0",
    }
    if in_flight is None:
        del body["in_flight"]
    code = status if status is not None else (200 if ready else 503)
    return Answer(code, json.dumps(body).encode())


def raw(
    status: int, text: str, content_type: str = "text/html", declared_length: int | None = None
) -> Answer:
    return Answer(status, text.encode(), content_type, declared_length)


def free_port() -> int:
    """A port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ScriptedServer:
    """Serves the scripted answers in order, one per request; the last one repeats."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.answers: list[Answer] = [readyz()]
        self.requests: list[dict[str, str]] = []
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def script(self, *answers: Answer) -> None:
        self.answers = list(answers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/readyz"

    def _next(self, headers: Mapping[str, str]) -> Answer:
        self.requests.append(dict(headers))
        return self.answers[min(len(self.requests), len(self.answers)) - 1]

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = server._next(self.headers)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                length = answer.declared_length or len(answer.body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = HTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None and self._thread is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeClock:
    """Monotonic seconds that move only when the gate sleeps; ``at`` runs a callback at a time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._events: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._events.append((when, action))

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"negative sleep {seconds}"
        self.sleeps.append(seconds)
        self.now += seconds
        due = [event for event in self._events if event[0] <= self.now]
        for event in due:
            self._events.remove(event)
            event[1]()


def unit_props(
    active: str = "active",
    sub: str | None = None,
    *,
    restarts: int = 0,
    invocation: str = "inv-1",
    pid: int = 4242,
    result: str = "success",
    code: int = 0,
    status: int = 0,
    load: str = "loaded",
) -> dict[str, str]:
    """``systemctl show`` properties of the unit, as strings the way systemctl prints them."""
    default_sub = {"active": "running", "activating": "start", "failed": "failed", "inactive": "dead"}
    return {
        "LoadState": load,
        "ActiveState": active,
        "SubState": sub or default_sub.get(active, "unknown"),
        "NRestarts": str(restarts),
        "InvocationID": invocation,
        "MainPID": str(pid),
        "Result": result,
        "ExecMainCode": str(code),
        "ExecMainStatus": str(status),
    }


def crashed(restarts: int, invocation: str, status: int = 1) -> dict[str, str]:
    """Between two attempts of a crash loop: exited with ``status``, waiting to restart."""
    return unit_props(
        "activating", "auto-restart", restarts=restarts, invocation=invocation, pid=0, result="exit-code",
        code=1, status=status,
    )  # fmt: skip


class FakeUnit:
    """``read_unit``: a timeline of (from this fake time on, these properties)."""

    def __init__(self, clock: FakeClock, timeline: list[tuple[float, dict[str, str]]]) -> None:
        self.clock = clock
        self.timeline = sorted(timeline, key=lambda entry: entry[0])
        self.reads = 0

    def __call__(self) -> dict[str, str]:
        self.reads += 1
        current = [props for when, props in self.timeline if when <= self.clock.now]
        assert current, f"no unit state scripted for t={self.clock.now}"
        return current[-1]


@dataclass
class FakeJournal:
    lines: list[str] = field(default_factory=lambda: ["rvm-edge: loading model", "Traceback: boom"])
    asked: list[int] = field(default_factory=list)

    def __call__(self, count: int) -> list[str]:
        self.asked.append(count)
        return self.lines[-count:]


class Rig:
    """The gate against the scripted server, a scripted unit (active by default) and a fake clock."""

    def __init__(self, server: ScriptedServer) -> None:
        self.server = server
        self.clock = FakeClock()
        self.unit = FakeUnit(self.clock, [(0.0, unit_props())])
        self.journal = FakeJournal()

    def timeline(self, *entries: tuple[float, dict[str, str]]) -> None:
        self.unit = FakeUnit(self.clock, list(entries))

    def run(self, url: str | None = None, **params: Any) -> GateResult:
        full: dict[str, Any] = {
            "url": url or self.server.url,
            "unit": UNIT,
            "mode": "ready",
            "timeout_s": 120,
            "window_s": 0,
            "unready_grace_s": 10,
            "min_frames": 1,
            "poll_s": 0.5,
            "request_timeout_s": 2.0,
            "journal_lines": 30,
            **params,
        }
        gate_io = GateIO(
            probe_http=lambda: rvm_health_gate.http_probe(full["url"], full["request_timeout_s"]),
            read_unit=self.unit,
            read_journal=self.journal,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        return run_gate(GateConfig.from_params(full), gate_io)


def run_gate_module(args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    """rvm_health_gate.main() in-process (as rvm_release_helpers.ModuleRun does for rvm_release)."""
    out = io.StringIO()
    with (
        patch_module_args(dict(args, _ansible_check_mode=check)),
        redirect_stdout(out),
        pytest.raises(SystemExit) as exit_info,
    ):
        rvm_health_gate.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    result["rc"] = exit_info.value.code
    return result
