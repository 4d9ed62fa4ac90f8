"""What must outlive a run: state.json (last success, the check rotation, the last backup's figures), the
lock that keeps two runs apart, and the `Outcome` a run folds into the state."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rvm_backup.errors import BackupError
from rvm_backup.files import atomic_write

STATE_FILE = "state.json"
RUN_LOCK_FILE = "run.lock"


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
def run_lock(state_dir: str) -> Iterator[None]:
    """One `run` at a time per device (timer and a manual run): they would race on the copies and state."""
    path = Path(state_dir) / RUN_LOCK_FILE
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another rvm-backup run is in progress (it holds {path})", "lock") from None
        yield


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
