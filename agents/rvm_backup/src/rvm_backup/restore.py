"""`rvm-backup restore`: one snapshot of this host into a new or empty directory, then the check of every
database copy in it (integrity and schema version), so a playbook knows what it is about to put back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rvm_backup.config import Config
from rvm_backup.errors import EXIT_FAILED, EXIT_OK, BackupError
from rvm_backup.files import make_private_dir
from rvm_backup.journal import Journal
from rvm_backup.restic import Restic, open_repository
from rvm_backup.sqlite_copy import inspect_restored
from rvm_backup.state import run_lock


def refuse_non_empty(target: Path) -> None:
    """Restoring over existing files would mix two states of the device: the target must be new or empty."""
    if target.exists() and not target.is_dir():
        raise BackupError(f"the restore target {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise BackupError(f"the restore target {target} is not empty; restore into a new or empty directory")


def resolve_snapshot(config: Config, listed: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """`latest` or an ID (or unique prefix) among this host's snapshots, so the report names the exact one."""
    how = f"list them with `rvm-backup snapshots --config {config.path}`"
    scope = f"host {config.host} with tags {','.join(config.tags)}"
    if wanted == "latest":
        if not listed:
            raise BackupError(f"there is no snapshot of {scope} yet; run `rvm-backup run` first")
        return listed[-1]
    matches = [snap for snap in listed if wanted and str(snap.get("id", "")).startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(snap.get("short_id", "?") for snap in matches)
        raise BackupError(f"snapshot {wanted!r} is ambiguous among the snapshots of {scope} ({ids}); {how}")
    raise BackupError(f"snapshot {wanted!r} not found among the {len(listed)} snapshot(s) of {scope}; {how}")


def cmd_restore(config: Config, journal: Journal, wanted: str, target_arg: str, wait_s: int) -> int:
    """`restore`: restore one snapshot into an empty directory and check the databases in it. Under the
    device's run lock, after a backup run in progress (up to wait_s): `latest` then means the snapshot
    that run made, and its forget --prune no longer holds the repository."""
    started = time.monotonic()
    target = Path(target_arg).absolute()
    refuse_non_empty(target)
    make_private_dir(config.state_dir)
    with run_lock(config.state_dir, wait_s):
        restic = Restic(config)
        open_repository(restic, None)
        snapshot = resolve_snapshot(config, restic.snapshots(), wanted)
        make_private_dir(str(target))
        restic.run(["restore", snapshot["id"], "--target", str(target), *restic.filters()])
    databases = [inspect_restored(entry, target) for entry in config.sqlite]
    journal.emit(
        {
            "snapshot": snapshot["id"],
            "time": snapshot.get("time"),
            "target": str(target),
            "databases": databases,
            "seconds": round(time.monotonic() - started, 3),
        }
    )
    bad = [db["restored"] for db in databases if db["restored"] is not None and db["integrity"] != "ok"]
    if bad:
        journal.error(f"restored database(s) fail PRAGMA integrity_check: {', '.join(bad)}")
        return EXIT_FAILED
    return EXIT_OK
