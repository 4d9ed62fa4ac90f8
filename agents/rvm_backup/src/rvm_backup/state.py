"""What must outlive a run: state.json (last success, the check rotation, the last backup's figures), the
lock that keeps two runs apart, and the `Outcome` a run folds into the state."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rvm_backup.errors import BackupError
from rvm_backup.files import atomic_write

STATE_FILE = "state.json"
RUN_LOCK_FILE = "run.lock"
# A run is at most this many restic commands (cat config, backup, forget, snapshots, check), each bounded
# by timeout_s; rvm-backup.service's TimeoutStartSec is the same sum plus a minute for the rest.
RUN_RESTIC_COMMANDS = 5
RUN_SLACK_S = 60


def longest_run_s(timeout_s: int) -> int:
    """How long a run can hold the lock before systemd stops it: how long a restore is willing to wait."""
    return timeout_s * RUN_RESTIC_COMMANDS + RUN_SLACK_S


@dataclasses.dataclass
class Outcome:
    """What this run learnt; becomes state.json and the metrics whether it succeeded or not."""

    started: float
    snapshot: str | None = None
    added_bytes: int | None = None
    files_processed: int | None = None
    snapshots: int | None = None
    check_ok: bool | None = None
    check_subset: str | None = None
    error: str | None = None


def load_state(state_dir: str) -> dict[str, Any]:
    """state.json; unreadable means start afresh (the next run writes a whole new one)."""
    try:
        state = json.loads((Path(state_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(state_dir: str, state: dict[str, Any]) -> None:
    """Written atomically: a crash must not lose the last success time that alerts depend on."""
    atomic_write(Path(state_dir) / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)


@contextlib.contextmanager
def run_lock(state_dir: str, wait_s: int | None = None) -> Iterator[None]:
    """One `run` or `restore` at a time per device. A second run refuses at once (the timer's next run
    comes anyway); a restore (wait_s) waits for a run in progress to finish: restic would refuse it
    while that run's forget --prune holds the repository, and an operator restoring a lost database
    wants the restore, not an error."""
    path = Path(state_dir) / RUN_LOCK_FILE
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_s is None:
                raise BackupError(
                    f"another rvm-backup run is in progress (it holds {path})", "lock"
                ) from None
            wait_for_lock(handle.fileno(), path, wait_s)
        yield


class LockWaitOver(Exception):
    """SIGALRM during the blocking flock: the wait is over."""


def _alarm(signum: int, frame: object) -> None:
    raise LockWaitOver


def wait_for_lock(fd: int, path: Path, wait_s: int) -> None:
    """Block on the lock (no polling: the kernel wakes us when the holder exits), at most wait_s."""
    print(f"rvm-backup: a backup run holds {path}; waiting up to {wait_s} s for it to finish",
          file=sys.stderr, flush=True)  # fmt: skip
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(wait_s, 1))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except LockWaitOver:
        raise BackupError(
            f"the backup run in progress still holds {path} after {wait_s} s; "
            "see `journalctl -u rvm-backup.service` and try again when it has finished",
            "lock",
        ) from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def next_subset(state: dict[str, Any], subsets: int) -> int:
    """The 1..N subset to read this run; restarts at 1 when check_subsets changed below it."""
    wanted = state.get("next_check_subset", 1)
    return wanted if isinstance(wanted, int) and 1 <= wanted <= subsets else 1


def record(state: dict[str, Any], outcome: Outcome, finished: float) -> None:
    """Fold this run into the state. Last success and the last backup's figures survive a failed run."""
    ok = outcome.error is None
    state.update(
        last_run_timestamp=finished,
        last_run_ok=ok,
        last_run_seconds=round(finished - outcome.started, 3),
        last_error=outcome.error,
    )
    if ok:
        state.update(last_success_timestamp=finished, last_snapshot=outcome.snapshot)
    if outcome.added_bytes is not None:
        state.update(last_added_bytes=outcome.added_bytes, last_files_processed=outcome.files_processed)
    if outcome.snapshots is not None:
        state["snapshots"] = outcome.snapshots
    if outcome.check_ok is not None:
        state.update(last_check_ok=outcome.check_ok, last_check_subset=outcome.check_subset)
