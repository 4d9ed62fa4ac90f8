"""The read-only commands: `snapshots` (this host's snapshots), `status` (the last run as a monitoring
check sees it; the fleet test and the role's first-run task read it) and `check-config` (the role's
`validate:` for the templated config)."""

from __future__ import annotations

import time
from pathlib import Path

from rvm_backup.config import Config
from rvm_backup.errors import EXIT_FAILED, EXIT_OK
from rvm_backup.files import make_private_dir
from rvm_backup.journal import Journal
from rvm_backup.metrics import METRICS_FILE, read_metrics
from rvm_backup.restic import Restic, open_repository
from rvm_backup.state import STATE_FILE, load_state


def cmd_snapshots(config: Config, journal: Journal) -> int:
    """`snapshots`: this host's snapshots, oldest first, newest last."""
    make_private_dir(config.state_dir)
    restic = Restic(config)
    open_repository(restic, None)
    keys = ("id", "short_id", "time", "paths", "tags")
    journal.emit([{key: snap.get(key) for key in keys} for snap in restic.snapshots()])
    return EXIT_OK


def cmd_status(config: Config, journal: Journal) -> int:
    """`status`: the last run as a monitoring check would see it (exit 1 unless the last run succeeded)."""
    state = load_state(config.state_dir)
    last_success = state.get("last_success_timestamp")
    metrics_path = Path(config.textfile_dir) / METRICS_FILE
    journal.emit(
        {
            "host": config.host,
            "last_run_ok": state.get("last_run_ok"),
            "last_run_timestamp": state.get("last_run_timestamp"),
            "last_success_timestamp": last_success,
            "last_success_age_seconds": round(time.time() - last_success, 3) if last_success else None,
            "last_error": state.get("last_error"),
            "state_file": str(Path(config.state_dir) / STATE_FILE),
            "state": state,
            "metrics_file": str(metrics_path),
            "metrics": read_metrics(metrics_path),
        }
    )
    return EXIT_OK if state.get("last_run_ok") else EXIT_FAILED


def cmd_check_config(config: Config, journal: Journal) -> int:
    """`check-config`: loading the config already validated it."""
    journal.emit({"config": config.path, "ok": True})
    return EXIT_OK
