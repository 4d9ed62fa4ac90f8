"""Runs prodtest.dbyear in app/.venv (rvm-edge's own store code) and turns its JSON into figures."""

from __future__ import annotations

import json
import os
import subprocess

from prodtest.figures import Figure, Results
from prodtest.lab import ROOT, LabError
from prodtest.profile import Profile
from prodtest.progress import say

STAGE = "Load: device database"
APP_PY = ROOT / "app" / ".venv" / "bin" / "python"


def run_db_year(prof: Profile, results: Results) -> None:
    if not APP_PY.exists():
        raise LabError(f"{APP_PY} is missing: run `make -C app venv` first")
    n = prof.db_days * prof.db_per_day
    say(
        f"db: seeding {n} deposits ({prof.db_days} days x {prof.db_per_day}/day), then {prof.db_inserts} inserts and a drain"
    )
    proc = subprocess.run(
        [
            str(APP_PY),
            "-m",
            "prodtest.dbyear",
            "--days",
            str(prof.db_days),
            "--per-day",
            str(prof.db_per_day),
            "--inserts",
            str(prof.db_inserts),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"prodtest.dbyear failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    raw = json.loads(proc.stdout)
    results.raw[STAGE] = raw
    note = f"{raw['seeded']} deposits seeded ({prof.db_days} days)"
    results.add(
        Figure(
            "db.insert_per_s",
            "insert rate (fsynced commits, JPEG)",
            raw["insert_per_s"],
            "deposits/s",
            stage=STAGE,
            note=note,
        ),
        Figure(
            "db.commit_p99_ms",
            "commit p99",
            raw["commit_ms_p99"],
            "ms",
            5.0,
            stage=STAGE,
            note="our budget (docs/benchmarks.md)",
        ),
        Figure(
            "db.drain_per_s",
            "outbox drain rate to a loopback simulator",
            raw["drain_per_s"],
            "deposits/s",
            50.0,
            ">=",
            stage=STAGE,
            note="our budget",
        ),
        Figure(
            "db.drained_once",
            "drained in order, exactly once",
            1.0 if raw["drained_in_order_once"] else 0.0,
            "bool",
            1.0,
            "==",
            stage=STAGE,
        ),
        Figure(
            "db.status_p99_ms",
            "outbox status query p99 (what /readyz and /metrics run)",
            raw["status_ms_p99"],
            "ms",
            50.0,
            stage=STAGE,
            note="health budget 50 ms",
        ),
        Figure("db.size_mb", "database size", raw["db_mb"], "MB", stage=STAGE),
    )
