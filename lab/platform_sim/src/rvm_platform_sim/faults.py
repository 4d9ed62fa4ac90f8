"""Fault injection: what goes wrong with the next edge request, decided up front.

The settings are the test's wishes (latency, a 5xx rate, dropped connections, an outage); the
decision for one request is a pure function of the settings and a seeded random generator, so a
test that sets a seed gets the same sequence of faults for the same sequence of requests.
The HTTP layer carries the decision out (sleeps, aborts the socket, answers 5xx).

Faults live in memory, not in SQLite: a restarted simulator starts healthy, like a restarted
platform would.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

ENDPOINTS = ("handshake", "heartbeat", "deposit", "sync-offline")
OutageMode = Literal["503", "reset"]


@dataclass(frozen=True)
class FaultSettings:
    """What the test asked for. Rates are probabilities per request in [0, 1]."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    error_next: int = 0
    drop_rate: float = 0.0
    drop_next: int = 0
    sync_fail_after: int | None = None
    endpoints: tuple[str, ...] = ENDPOINTS
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["endpoints"] = list(self.endpoints)
        return data


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one request: a 5xx instead of handling it, a dropped reply, a delay."""

    error_status: int | None = None
    drop: bool = False
    latency_s: float = 0.0
    sync_fail_after: int | None = None

    @property
    def label(self) -> str:
        if self.error_status is not None:
            return f"error_{self.error_status}"
        return "drop" if self.drop else ""


@dataclass
class Outage:
    """A full outage: ``until`` is a monotonic deadline, or None for "until cleared"."""

    mode: OutageMode
    until: float | None


@dataclass
class FaultState:
    """The live fault configuration plus the counters and generator that decide each request."""

    clock: Callable[[], float] = time.monotonic
    settings: FaultSettings = field(default_factory=FaultSettings)
    outage: Outage | None = None
    _rng: random.Random = field(default_factory=lambda: random.Random(0))
    _error_left: int = 0
    _drop_left: int = 0
    fired: dict[str, int] = field(default_factory=dict)

    def configure(self, settings: FaultSettings) -> None:
        """Replace the settings; the generator restarts from the seed so runs are repeatable."""
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._error_left = settings.error_next
        self._drop_left = settings.drop_next
        self.fired = {}

    def clear(self) -> None:
        self.configure(FaultSettings())
        self.outage = None

    def start_outage(self, seconds: float | None, mode: OutageMode) -> None:
        self.outage = Outage(mode=mode, until=None if seconds is None else self.clock() + seconds)

    def end_outage(self) -> bool:
        had = self.outage is not None
        self.outage = None
        return had

    def outage_mode(self) -> OutageMode | None:
        """The mode of the outage in force now, ending it when its window has passed."""
        if self.outage is None:
            return None
        if self.outage.until is not None and self.clock() >= self.outage.until:
            self.outage = None
            return None
        return self.outage.mode

    def outage_remaining_s(self) -> float | None:
        if self.outage_mode() is None or self.outage is None or self.outage.until is None:
            return None
        return max(0.0, self.outage.until - self.clock())

    def decide(self, endpoint: str) -> FaultDecision:
        """Draw the faults for one request to ``endpoint``; untargeted endpoints get none."""
        s = self.settings
        if endpoint not in s.endpoints:
            return FaultDecision()
        # Always draw three numbers so one request's outcome never shifts the next one's draws.
        error_draw, drop_draw, jitter_draw = self._rng.random(), self._rng.random(), self._rng.random()
        latency_s = max(0.0, s.latency_ms + (2 * jitter_draw - 1) * s.latency_jitter_ms) / 1000
        if self._error_left > 0 or error_draw < s.error_rate:
            self._error_left = max(0, self._error_left - 1)
            decision = FaultDecision(error_status=s.error_status, latency_s=latency_s)
        elif self._drop_left > 0 or drop_draw < s.drop_rate:
            self._drop_left = max(0, self._drop_left - 1)
            decision = FaultDecision(drop=True)
        else:
            decision = FaultDecision(latency_s=latency_s)
        if endpoint == "sync-offline" and decision.error_status is None:
            decision = replace(decision, sync_fail_after=s.sync_fail_after)
        if decision.label:
            self.fired[decision.label] = self.fired.get(decision.label, 0) + 1
        return decision

    def to_json(self) -> dict[str, Any]:
        mode = self.outage_mode()
        return {
            "faults": self.settings.to_json(),
            "pending": {"error_next": self._error_left, "drop_next": self._drop_left},
            "fired": dict(self.fired),
            "outage": None
            if mode is None
            else {
                "mode": mode,
                "remaining_s": self.outage_remaining_s(),
                "until_cleared": self._open_ended(),
            },
        }

    def _open_ended(self) -> bool:
        return self.outage is not None and self.outage.until is None
