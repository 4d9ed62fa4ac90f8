"""`rvm-backup run` as the systemd timer runs it: what an operator sees in the journal, the metrics, the
state file and the repository afterwards."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rvm_backup_helpers import (
    HOST,
    PASSWORD,
    TAG,
    USER_VERSION,
    Device,
    clean_env,
    insert_deposits,
    restic_binary,
)

METRIC_NAMES = {
    "rvm_backup_last_run_timestamp_seconds",
    "rvm_backup_last_success_timestamp_seconds",
    "rvm_backup_last_run_success",
    "rvm_backup_last_duration_seconds",
    "rvm_backup_last_added_bytes",
    "rvm_backup_last_files_processed",
    "rvm_backup_snapshots",
    "rvm_backup_last_check_success",
}


def test_first_run_initialises_the_repository_backs_up_and_writes_metrics(device: Device) -> None:
    device.create_database(40)
    started = time.time()

    result = device.run()

    assert result.returncode == 0, result.stderr
    assert [event["event"] for event in result.events] == [
        "sqlite_copy",
        "init",
        "backup",
        "forget",
        "check",
        "metrics",
        "done",
    ]
    assert all(isinstance(event["seconds"], float | int) for event in result.events)
    assert (device.repository / "config").is_file()
    copied = result.event("sqlite_copy")
    assert copied["source"] == str(device.database)
    assert (copied["integrity"], copied["user_version"]) == ("ok", USER_VERSION)
    backup = result.event("backup")
    assert backup["files_new"] >= 2 and backup["data_added"] > 0
    done = result.event("done")
    assert done["ok"] is True
    assert len(done["snapshot"]) == 64 and done["snapshot"].startswith(backup["snapshot"])

    metrics = device.metrics()
    assert set(metrics) == METRIC_NAMES
    assert metrics["rvm_backup_last_run_success"] == 1
    assert metrics["rvm_backup_snapshots"] == 1
    assert metrics["rvm_backup_last_check_success"] == 1
    assert started - 1 <= metrics["rvm_backup_last_success_timestamp_seconds"] <= time.time() + 1
    assert (
        metrics["rvm_backup_last_run_timestamp_seconds"]
        == metrics["rvm_backup_last_success_timestamp_seconds"]
    )
    assert metrics["rvm_backup_last_added_bytes"] == backup["data_added"]
    assert metrics["rvm_backup_last_files_processed"] == backup["total_files_processed"]
    assert 0 < metrics["rvm_backup_last_duration_seconds"] <= time.time() - started + 1
    prom = device.textfile_dir / "rvm_backup.prom"
    assert prom.stat().st_mode & 0o777 == 0o644
    text = prom.read_text()
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge\n" in text
    assert [p.name for p in device.textfile_dir.iterdir()] == ["rvm_backup.prom"]  # no temp file left

    (snapshot,) = json.loads(device.restic("snapshots", "--json").stdout)
    assert (snapshot["id"], snapshot["hostname"], snapshot["tags"]) == (done["snapshot"], HOST, [TAG])

    status = device.rvm_backup("status")
    assert status.returncode == 0
    assert status.document["last_run_ok"] is True
    assert 0 <= status.document["last_success_age_seconds"] < 60
    assert status.document["metrics"]["rvm_backup_snapshots"] == 1


def test_a_missing_database_is_skipped_and_the_run_succeeds(
    device: Device, template_repository: Path
) -> None:
    """A freshly provisioned device has no database until rvm-edge first starts."""
    device.use_repository(template_repository)

    result = device.run()

    assert result.returncode == 0, result.stderr
    assert "does not exist" in result.event("sqlite_copy")["skipped"]
    assert result.event("done")["ok"] is True
    assert not device.database.exists(), "a backup must never create the live database"
    assert not device.copy.exists()
    assert device.metrics()["rvm_backup_last_run_success"] == 1
    assert str(device.etc / "config.yml") in device.snapshot_paths()


def test_live_database_files_and_credentials_stay_out_of_the_snapshot(ready_device: Device) -> None:
    device = ready_device
    (device.data / "snapshots").mkdir()
    (device.data / "snapshots" / "schema6-before-1.4.0.sqlite3").write_bytes(b"an older copy")
    (device.data / "uploads.json").write_text("[]")
    service = sqlite3_service_connection(device)  # rvm-edge running: -wal and -shm exist
    try:
        assert Path(f"{device.database}-wal").exists() and Path(f"{device.database}-shm").exists()
        result = device.run()
    finally:
        service.close()

    assert result.returncode == 0, result.stderr
    stored = device.snapshot_paths()
    assert str(device.copy) in stored
    assert {str(device.etc / "config.yml"), str(device.data / "uploads.json")} <= stored
    for excluded in (
        device.database,
        Path(f"{device.database}-wal"),
        Path(f"{device.database}-shm"),
        device.etc / "credentials",
        device.data / "snapshots",
    ):
        assert str(excluded) not in stored
    assert not any(path.startswith(str(device.state_dir / "cache")) for path in stored)


def sqlite3_service_connection(device: Device) -> sqlite3.Connection:
    """An open connection that has written, as the running service has: the -wal and -shm files exist."""
    conn = sqlite3.connect(device.database)
    with conn:
        conn.execute("INSERT INTO deposits (payload) VALUES (x'00')")
        conn.execute("UPDATE totals SET deposits = deposits + 1")
    return conn


@pytest.fixture(scope="module")
def four_runs(
    tmp_path_factory: pytest.TempPathFactory, template_repository: Path, driver: Path
) -> tuple[Device, list[Any]]:
    """keep_last 2 (every other keep 0) and check_subsets 3, four runs with a deposit between each."""
    device = Device(tmp_path_factory.mktemp("four-runs") / "device", driver)
    device.use_repository(template_repository)
    device.create_database(10)
    keeps = {"keep_last": 2, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}
    device.write_config(retention=keeps, check_subsets=3)
    runs = []
    for _ in range(4):
        result = device.run()
        assert result.returncode == 0, result.stderr
        runs.append((result, device.state(), device.metrics()))
        insert_deposits(device.database, 1)
    return device, runs


def test_retention_keeps_the_last_two_snapshots(four_runs: tuple[Device, list[Any]]) -> None:
    device, runs = four_runs
    assert [metrics["rvm_backup_snapshots"] for _, _, metrics in runs] == [1, 2, 2, 2]
    assert [result.event("forget")["keep"] for result, _, _ in runs] == [{"keep_last": 2}] * 4
    remaining = [snap["id"] for snap in json.loads(device.restic("snapshots", "--json").stdout)]
    newest_two = [result.event("done")["snapshot"] for result, _, _ in runs[2:]]
    assert sorted(remaining) == sorted(newest_two)


def test_check_reads_a_rotating_subset(four_runs: tuple[Device, list[Any]]) -> None:
    _, runs = four_runs
    assert [state["last_check_subset"] for _, state, _ in runs] == ["1/3", "2/3", "3/3", "1/3"]
    assert [result.event("check")["subset"] for result, _, _ in runs] == ["1/3", "2/3", "3/3", "1/3"]
    assert all(metrics["rvm_backup_last_check_success"] == 1 for _, _, metrics in runs)


def test_all_keeps_zero_skips_forget(ready_device: Device) -> None:
    device = ready_device
    device.write_config(
        retention=dict.fromkeys(("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"), 0)
    )

    result = device.run()

    assert result.returncode == 0, result.stderr
    assert "keep_" in result.event("forget")["skipped"]
    assert result.event("forget")["snapshots"] == 1


def test_wrong_password_fails_names_the_file_and_keeps_the_last_success(ready_device: Device) -> None:
    device = ready_device
    good = device.run()
    assert good.returncode == 0, good.stderr
    last_success = device.metrics()["rvm_backup_last_success_timestamp_seconds"]
    snapshots_before = sorted((device.repository / "snapshots").iterdir())
    device.set_password("Wrong-Battery-Staple-0815")

    bad = device.run()

    assert bad.returncode == 1
    assert str(device.password_file) in bad.stderr
    assert "password" in bad.stderr
    error = bad.event("error")
    assert error["step"] == "repository" and str(device.password_file) in error["message"]
    assert [event["event"] for event in bad.events] == ["sqlite_copy", "error", "metrics", "done"]
    assert bad.event("done")["ok"] is False
    metrics = device.metrics()
    assert metrics["rvm_backup_last_run_success"] == 0
    assert metrics["rvm_backup_last_success_timestamp_seconds"] == last_success
    assert metrics["rvm_backup_last_run_timestamp_seconds"] > last_success
    assert metrics["rvm_backup_snapshots"] == 1
    assert sorted((device.repository / "snapshots").iterdir()) == snapshots_before
    assert len(list((device.repository / "keys").iterdir())) == 1, "nothing may be initialised"
    status = device.rvm_backup("status")
    assert status.returncode == 1
    assert status.document["last_run_ok"] is False
    assert status.document["last_success_timestamp"] == last_success
    assert all(PASSWORD not in output and "Wrong-Battery" not in output for output in device.outputs)


def test_a_locked_repository_is_reported_and_unlock_is_suggested_only_when_stale(
    ready_device: Device,
) -> None:
    device = ready_device
    env = clean_env()
    env.update(RESTIC_REPOSITORY=str(device.repository), RESTIC_PASSWORD_FILE=str(device.password_file))
    holder = subprocess.Popen(
        [restic_binary(), "-v", "backup", "--stdin", "--stdin-filename", "held", "--no-cache"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None
        for line in holder.stdout:  # restic prints this once it holds its lock
            if line.startswith("load index files"):
                break
        else:
            pytest.fail("restic backup --stdin ended before it locked the repository")
        live = device.run()
    finally:
        holder.kill()
        holder.wait()

    assert live.returncode == 1
    assert live.event("error")["step"] == "forget"
    assert "locked" in live.stderr and f"PID {holder.pid}" in live.stderr and "still running" in live.stderr
    assert "restic unlock" not in live.stdout + live.stderr
    assert device.metrics()["rvm_backup_last_run_success"] == 0

    stale = device.run()  # the holder is gone; its lock is left behind

    assert stale.returncode == 1
    assert "stale" in stale.stderr and "restic unlock" in stale.stderr
    device.restic("unlock")
    again = device.run()
    assert again.returncode == 0, again.stderr
    assert device.metrics()["rvm_backup_last_run_success"] == 1


def test_a_hung_restic_is_interrupted_at_timeout_s(device: Device, tmp_path: Path) -> None:
    # A hung restic that still answers SIGINT the way restic does (exit 130). Written in Python, not sh:
    # a shell cannot trap a SIGINT that was ignored when it started (a CI job started in the
    # background), and `sleep` would then sit out the whole grace period before its SIGKILL.
    hung = tmp_path / "restic"
    hung.write_text(
        f"#!{sys.executable}\nimport signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(130))\ntime.sleep(120)\n"
    )
    hung.chmod(0o755)
    device.write_config(restic=str(hung), timeout_s=1)
    started = time.monotonic()

    result = device.run()

    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "did not finish within 1 s" in result.stderr and "timeout_s" in result.stderr
    assert device.metrics()["rvm_backup_last_run_success"] == 0


def test_a_password_in_the_repository_url_is_never_printed(device: Device) -> None:
    secret = "UrlSecret-4242"
    device.secrets.append(secret)  # every output is checked for it
    device.write_config(repository=f"rest:http://rvm:{secret}@127.0.0.1:9/{HOST}")

    result = device.run()

    assert result.returncode == 1
    assert "rvm:***@127.0.0.1" in result.stderr


def test_a_failing_check_fails_the_run(ready_device: Device) -> None:
    device = ready_device
    device.write_config(check_subsets=1)
    assert device.run().returncode == 0
    packs = sorted(path for path in (device.repository / "data").rglob("*") if path.is_file())
    for pack in packs:  # bit rot on the backup server
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))

    result = device.run()

    assert result.returncode == 1
    assert result.event("error")["step"] == "check"
    assert "restic check failed" in result.stderr
    assert [event["event"] for event in result.events][-4:] == ["forget", "error", "metrics", "done"]
    metrics = device.metrics()
    assert (metrics["rvm_backup_last_run_success"], metrics["rvm_backup_last_check_success"]) == (0, 0)
    assert device.state()["last_check_ok"] is False


def test_a_second_run_while_one_is_in_progress_leaves_it_alone(ready_device: Device) -> None:
    device = ready_device
    assert device.run().returncode == 0
    metrics_before = (device.textfile_dir / "rvm_backup.prom").read_text()
    with open(device.state_dir / "run.lock", "a") as held:  # the timer's run, still going
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = device.run()

    assert result.returncode == 1
    assert "another rvm-backup run is in progress" in result.stderr
    assert (device.textfile_dir / "rvm_backup.prom").read_text() == metrics_before
    assert [event["event"] for event in result.events] == ["error", "done"]
