"""`rvm-backup run`, the timer's job: (a) consistent SQLite copies, (b) restic backup, (c) retention with
forget --prune, (d) check of a rotating 1/N data subset, (e) metrics and state, also after a failure so
that alerts fire. One JSON journal line per step; the first failing step stops the run."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rvm_backup.config import Config
from rvm_backup.errors import EXIT_FAILED, EXIT_OK, BackupError
from rvm_backup.files import make_private_dir
from rvm_backup.journal import Journal
from rvm_backup.metrics import write_metrics
from rvm_backup.restic import Restic, json_lines, keep_options, open_repository, tail
from rvm_backup.sqlite_copy import copy_database, skip_missing_database
from rvm_backup.state import STATE_FILE, Outcome, load_state, next_subset, record, run_lock, save_state


class Steps:
    """Times each step and logs it as one JSON line, or tags the failure with the step's name."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    @contextlib.contextmanager
    def step(self, name: str, log: bool = True) -> Iterator[dict[str, Any]]:
        """The step fills the yielded dict with what it wants logged; log=False only names failures."""
        started = time.monotonic()
        fields: dict[str, Any] = {}
        try:
            yield fields
        except BackupError as exc:
            exc.step = exc.step or name
            exc.seconds = time.monotonic() - started
            raise
        except OSError as exc:  # a full disk, a missing directory: still a failed step with metrics
            failure = BackupError(str(exc), name)
            failure.seconds = time.monotonic() - started
            raise failure from exc
        if log:
            self.journal.event(name, time.monotonic() - started, **fields)


def copy_databases(config: Config, steps: Steps) -> None:
    """Step (a): every configured database, one log line each."""
    for entry in config.sqlite:
        with steps.step("sqlite_copy") as fields:
            fields["source"] = entry.source
            if Path(entry.source).exists():
                fields.update(copy_database(entry))
            else:
                fields.update(skip_missing_database(entry))


def backup_paths(config: Config) -> tuple[list[str], list[str]]:
    """The paths restic backs up (config paths, then the copies' directories) that exist, and the others."""
    wanted = list(dict.fromkeys([*config.paths, *(str(Path(e.copy).parent) for e in config.sqlite)]))
    present = [path for path in wanted if os.path.exists(path)]
    return present, [path for path in wanted if path not in present]


def backup(config: Config, restic: Restic, fields: dict[str, Any], outcome: Outcome) -> None:
    """Step (b): restic backup, and the numbers of its summary message."""
    present, missing = backup_paths(config)
    if not present:
        raise BackupError(f"none of the paths to back up exists: {', '.join(missing)}")
    args = ["backup", "--host", config.host, "--json"]
    args += [option for tag in config.tags for option in ("--tag", tag)]
    args += [option for pattern in config.excludes for option in ("--exclude", pattern)]
    result = restic.call([*args, *present])
    if result.returncode == 3:
        raise BackupError(
            f"restic backup could not read some files (snapshot incomplete): {tail(result.stderr)}"
        )
    if result.returncode != 0:
        raise BackupError(restic.explain("backup", result))
    summary = next((m for m in json_lines(result.stdout) if m.get("message_type") == "summary"), None)
    if summary is None:
        raise BackupError(f"restic backup printed no summary: {tail(result.stdout + result.stderr)}")
    keys = ("files_new", "files_changed", "data_added", "total_files_processed", "total_bytes_processed")
    fields.update(snapshot=summary.get("snapshot_id"), **{key: summary.get(key, 0) for key in keys})
    fields.update(paths=present, missing_paths=missing)
    outcome.snapshot = summary.get("snapshot_id")
    outcome.added_bytes = int(summary.get("data_added", 0))
    outcome.files_processed = int(summary.get("total_files_processed", 0))


def forget(config: Config, restic: Restic, fields: dict[str, Any], outcome: Outcome) -> None:
    """Step (c): retention, then count what remains. Grouped by host and tags, not restic's default
    host+paths: a path that appears later (the first database copy) must not start a second group."""
    keeps = keep_options(config.retention)
    if keeps:
        restic.run(["forget", *restic.filters(), "--group-by", "host,tags", "--prune", *keeps])
        fields["keep"] = {key: value for key, value in config.retention.items() if value > 0}
    else:
        fields["skipped"] = "every retention.keep_* is 0: no retention policy, every snapshot is kept"
    listed = restic.snapshots()
    outcome.snapshots = len(listed)
    fields["snapshots"] = len(listed)
    if outcome.snapshot:
        full = [snap["id"] for snap in listed if str(snap.get("id", "")).startswith(outcome.snapshot)]
        outcome.snapshot = full[0] if full else outcome.snapshot


def check(
    config: Config, restic: Restic, state: dict[str, Any], fields: dict[str, Any], outcome: Outcome
) -> None:
    """Step (d): read one 1/N subset of the data, so N runs read all of it once. The rotation advances only
    when the check passed, so a failing subset is read again until the repository is repaired."""
    subset = next_subset(state, config.check_subsets)
    outcome.check_subset = f"{subset}/{config.check_subsets}"
    fields["subset"] = outcome.check_subset
    outcome.check_ok = False
    restic.run(["check", f"--read-data-subset={outcome.check_subset}"])
    outcome.check_ok = True
    state["next_check_subset"] = subset % config.check_subsets + 1


def run_steps(config: Config, journal: Journal, state: dict[str, Any], outcome: Outcome) -> None:
    """Steps (a) to (d) in order; the first failure stops the run."""
    steps = Steps(journal)
    copy_databases(config, steps)
    restic = Restic(config)
    with steps.step("repository", log=False):  # logs an "init" event only when it creates the repository
        open_repository(restic, journal)
    with steps.step("backup") as fields:
        backup(config, restic, fields, outcome)
    with steps.step("forget") as fields:
        forget(config, restic, fields, outcome)
    with steps.step("check") as fields:
        check(config, restic, state, fields, outcome)


def report_failure(journal: Journal, exc: BackupError) -> None:
    """An error event for the journal's parsers and a plain line on stderr for people."""
    journal.event("error", exc.seconds, step=exc.step, message=str(exc))
    journal.error(f"{exc.step}: {exc}" if exc.step else str(exc))


def finish(config: Config, journal: Journal, state: dict[str, Any], outcome: Outcome) -> bool:
    """Step (e): record the run, write metrics (also after a failure, so alerts fire) and state.
    True if the run passed."""
    record(state, outcome, time.time())
    started = time.monotonic()
    try:
        path = write_metrics(config.textfile_dir, config.host, state)
        journal.event("metrics", time.monotonic() - started, path=str(path))
    except OSError as exc:
        report_failure(
            journal, BackupError(f"cannot write the metrics into {config.textfile_dir}: {exc}", "metrics")
        )
        state.update(last_run_ok=False, last_error=f"metrics: {exc}")
    try:
        save_state(config.state_dir, state)
    except OSError as exc:
        report_failure(
            journal, BackupError(f"cannot write {STATE_FILE} into {config.state_dir}: {exc}", "state")
        )
        return False
    return bool(state["last_run_ok"])


def cmd_run(config: Config, journal: Journal) -> int:
    """`run`: back up, prune, check, and always leave metrics and state describing the outcome."""
    outcome = Outcome(started=time.time())
    make_private_dir(config.state_dir)
    try:
        with run_lock(config.state_dir):
            state = load_state(config.state_dir)
            try:
                run_steps(config, journal, state, outcome)
            except BackupError as exc:
                outcome.error = journal.scrub(f"{exc.step}: {exc}")
                report_failure(journal, exc)
            ok = finish(config, journal, state, outcome)
    except BackupError as exc:  # another run holds the device: its metrics and state are left alone
        report_failure(journal, exc)
        ok = False
    seconds = time.time() - outcome.started
    journal.event("done", seconds, ok=ok, snapshot=outcome.snapshot if ok else None)
    return EXIT_OK if ok else EXIT_FAILED
