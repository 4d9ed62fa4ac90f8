"""``PRODTEST_PROFILE``: quick (a few minutes, for development) or full (the issue's durations)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    load_s: float  # devices' cameras running, measured
    sample_s: float  # CPU/RSS/readiness sampling interval
    api_machines: int  # simulated machines depositing concurrently
    api_deposits: int  # deposits per simulated machine
    db_days: int  # days of deposits seeded into the device database ("a year" in full)
    db_per_day: int
    db_inserts: int  # measured inserts on top of the seeded database
    fault_s: float  # each platform fault (10x rate, latency, 5xx storm)
    outage_s: float  # the platform outage
    drain_timeout_s: float  # bound on waiting for the devices' outboxes to drain


PROFILES = {
    "quick": Profile("quick", 60, 5, 10, 20, 36, 500, 200, 20, 30, 240),
    "full": Profile("full", 600, 10, 50, 100, 365, 500, 1000, 120, 600, 1800),
}


def current() -> Profile:
    name = os.environ.get("PRODTEST_PROFILE", "quick")
    if name not in PROFILES:
        raise SystemExit(f"PRODTEST_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    return PROFILES[name]
