"""`rvm-backup restore` and `snapshots` as Ansible uses them, and the consistency of the database copy
while rvm-edge keeps writing."""

from __future__ import annotations

import datetime
import fcntl
from pathlib import Path

from rvm_backup_helpers import (
    TAG,
    USER_VERSION,
    Device,
    Result,
    insert_deposits,
    integrity,
    read_deposits,
    writer,
)


def test_restore_latest_gives_back_the_database_as_it_was_at_backup_time(
    ready_device: Device, tmp_path: Path
) -> None:
    device = ready_device
    at_backup = read_deposits(device.database)
    backed_up = device.run()
    assert backed_up.returncode == 0, backed_up.stderr
    snapshot = backed_up.event("done")["snapshot"]
    insert_deposits(device.database, 5)  # the device moves on after the backup
    target = tmp_path / "restore"
    target.mkdir()  # an existing empty directory is fine

    result = device.rvm_backup("restore", "--snapshot", "latest", "--target", str(target))

    assert result.returncode == 0, result.stderr
    report = result.document
    assert set(report) == {"snapshot", "time", "target", "databases", "seconds"}
    assert (report["snapshot"], report["target"]) == (snapshot, str(target))
    assert datetime.datetime.fromisoformat(report["time"][:19]).year >= 2024
    restored = target / device.copy.relative_to("/")
    assert report["databases"] == [
        {
            "source": str(device.database),
            "restored": str(restored),
            "integrity": "ok",
            "user_version": USER_VERSION,
        }
    ]
    assert read_deposits(restored) == at_backup
    assert read_deposits(device.database)[1] == at_backup[1] + 5

    listed = device.rvm_backup("snapshots")
    assert listed.returncode == 0, listed.stderr
    (entry,) = listed.document
    assert set(entry) == {"id", "short_id", "time", "paths", "tags"}
    assert (entry["id"], entry["tags"]) == (snapshot, [TAG])
    assert str(device.copy.parent) in entry["paths"]

    by_id = device.rvm_backup("restore", "--snapshot", entry["short_id"], "--target", str(tmp_path / "by-id"))
    assert by_id.returncode == 0, by_id.stderr
    assert by_id.document["snapshot"] == snapshot

    refused = device.rvm_backup("restore", "--snapshot", "latest", "--target", str(target))

    assert refused.returncode == 1
    assert str(target) in refused.stderr and "not empty" in refused.stderr
    assert refused.stdout == ""


def test_restore_of_an_unknown_snapshot_names_it_and_how_to_list_them(
    ready_device: Device, tmp_path: Path
) -> None:
    device = ready_device
    assert device.run().returncode == 0
    target = tmp_path / "restore"

    result = device.rvm_backup("restore", "--snapshot", "deadbeef", "--target", str(target))

    assert result.returncode == 1
    assert "'deadbeef' not found" in result.stderr
    assert "rvm-backup snapshots" in result.stderr
    assert result.stdout == ""
    assert not target.exists()


def test_the_copy_is_consistent_while_the_service_writes(ready_device: Device, tmp_path: Path) -> None:
    """A writer commits deposits (a row and a running total per transaction) throughout the run."""
    device = ready_device
    initial = len(read_deposits(device.database)[0])

    with writer(device.database, warm_up=200) as written:
        result = device.run()

    assert result.returncode == 0, result.stderr
    restore = device.rvm_backup("restore", "--snapshot", "latest", "--target", str(tmp_path / "restore"))
    assert restore.returncode == 0, restore.stderr
    (database,) = restore.document["databases"]
    restored = Path(database["restored"])
    assert database["integrity"] == "ok" and integrity(restored) == "ok"
    ids, total = read_deposits(restored)
    assert ids == list(range(1, len(ids) + 1)), "the copy must hold a prefix of the deposits"
    assert total == len(ids), "the copy holds a torn transaction"
    assert len(ids) >= initial + written["before"], "deposits committed before the run are missing"
    assert len(ids) < initial + written["total"], "the writer did not write during the run"
    assert integrity(device.database) == "ok"


def test_a_restore_waits_for_the_backup_run_in_progress(ready_device: Device, tmp_path: Path) -> None:
    """The timer's run, mid forget --prune, holds restic's exclusive lock: a restore started then must
    wait for it rather than fail (a CI run on 2026-12-07 failed on exactly that), and then restore the
    snapshot that run made."""
    device = ready_device
    assert device.run().returncode == 0
    with open(device.state_dir / "run.lock", "a") as held:  # the timer's run, still going
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = device.start("restore", "--snapshot", "latest", "--target", str(tmp_path / "r"))
        assert proc.stderr is not None
        waiting = proc.stderr.readline()  # blocks until the restore says it waits
        assert "a backup run holds" in waiting and "waiting up to" in waiting, waiting
        assert not (tmp_path / "r").exists(), "the restore fetched before the run finished"
        newest = device.run()  # (refused: the lock is held) ...
        assert "another rvm-backup run is in progress" in newest.stderr
    # ... the run finishes: the lock goes with its process
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert Result(0, stdout, "").document["databases"][0]["integrity"] == "ok"


def test_a_restore_gives_up_waiting_after_wait_s(ready_device: Device, tmp_path: Path) -> None:
    device = ready_device
    assert device.run().returncode == 0
    with open(device.state_dir / "run.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = device.rvm_backup(
            "restore", "--snapshot", "latest", "--target", str(tmp_path / "r"), "--wait-s", "1"
        )

    assert result.returncode == 1
    assert "the backup run in progress still holds" in result.stderr and "after 1 s" in result.stderr
    assert not (tmp_path / "r").exists()
