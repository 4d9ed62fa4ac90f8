"""What the operator reads when restic refuses: lock diagnosis (stale or live, by restic's own rule),
restic's timestamps and durations, and the scrubbing of secrets from every line the driver prints."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys

import pytest

from rvm_backup.journal import Journal, redact_url
from rvm_backup.restic import explain_lock, parse_go_duration, parse_restic_time, tail


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("850ms", 0.85), ("1h2m3.5s", 3723.5), ("31m0s", 1860.0), ("12µs", 12e-6), ("2h", 7200.0)],
)
def test_go_durations_as_restic_prints_lock_ages(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1h 2m", "3d", "5m!"])
def test_anything_else_is_no_duration(text: str) -> None:
    assert parse_go_duration(text) is None


def test_restic_timestamps_with_nanoseconds_and_offsets() -> None:
    utc = parse_restic_time("2026-12-01T10:00:00.123456789Z")
    plus_two = parse_restic_time("2026-12-01T12:00:00.123456789+02:00")

    assert utc == pytest.approx(1796119200.123456789)
    assert plus_two == pytest.approx(utc)
    assert parse_restic_time("2026-12-01T10:00:00Z") == pytest.approx(1796119200.0)
    assert parse_restic_time("yesterday") == 0.0


def lock_stderr(pid: int, host: str, age: str) -> str:
    return (
        "unable to create lock in backend: repository is already locked by PID "
        f"{pid} on {host} by root (UID 0, GID 0)\nlock was created at 2026-12-01 10:00:00 ({age} ago)\n"
        "storage ID 1a2b3c4d\n"
    )


def test_a_young_lock_of_another_host_is_live_and_must_be_left_alone() -> None:
    message = explain_lock(lock_stderr(4242, "rvm-other-07", "5m3.2s"))

    assert "still running" in message and "PID 4242 on rvm-other-07" in message
    assert "restic unlock" not in message


def test_a_lock_older_than_30_minutes_is_stale() -> None:
    message = explain_lock(lock_stderr(4242, "rvm-other-07", "31m0s"))

    assert "stale lock" in message and "older than 30 minutes" in message and "restic unlock" in message


def test_a_lock_of_a_process_of_this_host_that_has_ended_is_stale() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(ended.stdout)

    stale = explain_lock(lock_stderr(pid, socket.gethostname(), "10s"))
    live = explain_lock(lock_stderr(os.getpid(), socket.gethostname(), "10s"))

    assert "that process no longer runs" in stale and "restic unlock" in stale
    assert "still running" in live and "restic unlock" not in live


def test_a_lock_message_restic_words_differently_still_says_what_to_do() -> None:
    assert "wait for it to finish" in explain_lock("repository is already locked")


def test_the_tail_of_restic_stderr_skips_blank_lines() -> None:
    text = "\n".join(f"line {n}" for n in range(20)) + "\n\n   \n"

    assert tail(text, 3) == "line 17\nline 18\nline 19"


def test_a_password_in_a_repository_url_is_redacted() -> None:
    assert redact_url("rest:https://rvm:s3cret@backup.example:8000/rvm-01") == (
        "rest:https://rvm:***@backup.example:8000/rvm-01"
    )
    assert redact_url("sftp:rvm-backup-rvm-01@10.0.0.5:/repo") == "sftp:rvm-backup-rvm-01@10.0.0.5:/repo"


def test_the_journal_scrubs_the_password_raw_and_json_escaped() -> None:
    out, err = io.StringIO(), io.StringIO()
    journal = Journal(['pa"ss\\word'], out=out, err=err)

    journal.event("error", 1.23456, message='restic said: pa"ss\\word is wrong')
    journal.error('cannot open with pa"ss\\word')

    assert out.getvalue() == '{"event": "error", "seconds": 1.235, "message": "restic said: *** is wrong"}\n'
    assert err.getvalue() == "rvm-backup: error: cannot open with ***\n"
