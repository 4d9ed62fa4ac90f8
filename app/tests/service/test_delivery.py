"""Delivery guarantees, end to end: real ``rvm-edge run`` processes against the real simulator.

Every deposit decided must reach the platform, in order, once; the only allowed duplicate is a
resend after a reply that never arrived (dropped connection, kill -9 during the request), and
it lands right behind the original with the same ``deposit_id``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from service.helpers import (
    DASH_TOKEN,
    collapse_repeats,
    deposit_ids,
    local_ids,
    start_service,
    wait_for,
    write_config,
)


def cli(config: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rvm-edge ARGS --config CONFIG`` in a subprocess, with the test's credentials directory."""
    return subprocess.run(
        [sys.executable, "-m", "rvm_edge.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")},
    )


def flush(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``rvm-edge outbox flush`` with the service stopped: sends what is left, in order."""
    return cli(config, tmp_path, "outbox", "flush")


def offline_count(data_dir: Path) -> int:
    conn = sqlite3.connect(str(data_dir / "rvm-edge.sqlite3"))
    try:
        return conn.execute("SELECT COUNT(*) FROM offline_transactions").fetchone()[0]
    finally:
        conn.close()


def sent_count(data_dir: Path) -> int:
    conn = sqlite3.connect(str(data_dir / "rvm-edge.sqlite3"))
    try:
        return conn.execute("SELECT COUNT(*) FROM deposits WHERE state = 'sent'").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_outage_with_deposits_flowing_loses_and_duplicates_nothing(
    mode: str,
    tmp_path: Path,
    sim: Any,
    machine: dict,
    one_bottle_model: Path,
    frames_dir: Path,
    services: list,
) -> None:
    """A platform outage while items keep coming: all queued durably, all delivered afterwards.

    Time is compressed, not skipped: backoff_max_s 0.3 and breaker_reset_s 0.3 instead of the
    production 60 s / 30 s, and an outage of ~40 deposits at 20 items/s (2 s) instead of 5
    minutes. The client goes through the same states (breaker opens, probes, backs off, link
    down, offline transactions queued, recovery) about as many times as in a 5-minute outage
    with production settings (300 s / 30 s = 10 breaker periods; here 2 s / 0.3 s ≈ 7).
    """
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir)
    svc = start_service(tmp_path, config)
    services.append(svc)
    wait_for(lambda: len(deposit_ids(sim)) >= 3, 30, "first deposits delivered")
    sim.admin("POST", "/outage", {"mode": mode})
    data_dir = tmp_path / "data"
    before = len(local_ids(data_dir))
    wait_for(lambda: len(local_ids(data_dir)) >= before + 40, 30, "40 deposits recorded during the outage")
    status = wait_for(
        lambda: (s := svc.get("/api/status", DASH_TOKEN).json())["platform"]["link"] == "down" and s,
        10,
        "the link reported down",
    )
    assert status["outbox"]["pending"] > 0 and status["ready"]  # an outage is not a device fault
    assert offline_count(data_dir) > 0  # accepted items during the outage also queue offline transactions
    sim.admin("DELETE", "/outage")
    wait_for(lambda: len(deposit_ids(sim)) >= before + 40, 30, "the backlog delivered after the outage")
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    result = flush(config, tmp_path)
    assert result.returncode == 0, result.stderr

    local = local_ids(data_dir)
    assert deposit_ids(sim) == local  # every one, in order, exactly once
    synced = sim.admin("GET", "/offline-transactions")
    assert len(synced) == offline_count(data_dir)


def test_dropped_reply_is_resent_once_right_behind_the_original(
    tmp_path: Path, sim: Any, machine: dict, one_bottle_model: Path, frames_dir: Path, services: list
) -> None:
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir)
    sim.admin("PUT", "/faults", {"drop_next": 1, "endpoints": ["deposit"]})
    svc = start_service(tmp_path, config)
    services.append(svc)
    wait_for(lambda: len(deposit_ids(sim)) >= 6, 30, "deposits after the dropped reply")
    svc.wait_event(lambda e: "may see it twice" in e.get("event", ""), 5)
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    assert flush(config, tmp_path).returncode == 0
    received = deposit_ids(sim)
    unique, repeats = collapse_repeats(received)
    assert repeats == 1 and received[0] == received[1]  # the first deposit's reply was dropped
    assert unique == local_ids(tmp_path / "data")


def test_kill9_mid_send_then_restart_delivers_everything_in_order(
    tmp_path: Path, sim: Any, machine: dict, one_bottle_model: Path, frames_dir: Path, services: list
) -> None:
    """kill -9 while a deposit request is in the air (the simulator holds each reply 300 ms after
    storing it), three times; each restart resends at most that one deposit."""
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir, source={"fps": 10})
    sim.admin("PUT", "/faults", {"latency_ms": 300, "endpoints": ["deposit"]})
    kills = 3
    for round_ in range(kills):
        svc = start_service(tmp_path, config)
        services.append(svc)
        n = len(deposit_ids(sim))
        wait_for(lambda n=n: len(deposit_ids(sim)) >= n + 2, 30, f"deposits in round {round_}")
        # in flight: the simulator has stored a deposit the device has not yet seen confirmed
        wait_for(
            lambda: len(set(deposit_ids(sim))) > sent_count(tmp_path / "data"),
            10,
            "a deposit stored but its reply not yet received",
            interval=0.01,
        )
        svc.process.kill()
        assert svc.wait(10) == -signal.SIGKILL
    sim.admin("DELETE", "/faults")
    svc = start_service(tmp_path, config)
    services.append(svc)
    wait_for(lambda: svc.get("/readyz").json()["checks"]["outbox_moving"]["ok"], 20, "outbox moving")
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    result = flush(config, tmp_path)
    assert result.returncode == 0, result.stderr
    check = cli(config, tmp_path, "db", "check")
    assert check.returncode == 0 and check.stdout.startswith("ok"), check.stderr  # three kills, no damage
    status = json.loads(cli(config, tmp_path, "outbox", "status").stdout)
    assert (status["pending"], status["parked"], status["service_running"]) == (0, 0, False)
    unique, repeats = collapse_repeats(deposit_ids(sim))
    assert unique == local_ids(tmp_path / "data")
    assert 1 <= repeats <= kills  # each kill hit a request in the air: its deposit came twice


def test_sigterm_while_a_request_hangs_still_exits_cleanly_in_time(
    tmp_path: Path, sim: Any, machine: dict, one_bottle_model: Path, frames_dir: Path, services: list
) -> None:
    """The platform holds every deposit reply for 30 s; the client gives up after timeout_s (2 s).
    SIGTERM must still drain and exit 0 well inside systemd's stop timeout."""
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir)
    sim.admin("PUT", "/faults", {"latency_ms": 30000, "endpoints": ["deposit"]})
    svc = start_service(tmp_path, config)
    services.append(svc)
    svc.wait_notify("READY=1", 60)
    wait_for(lambda: len(deposit_ids(sim)) >= 1, 20, "a deposit stored whose reply is held back")
    t0 = time.monotonic()
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    assert time.monotonic() - t0 < 15
    stopped = svc.wait_event(lambda e: e.get("event") == "stopped", 5)
    assert stopped["in_flight"] == 0 and stopped["recorded"] == len(local_ids(tmp_path / "data"))
