"""Consistent copies of live SQLite databases, and the check of a restored copy.

Copying a live SQLite file (and its -wal) with a file-level tool can capture a torn database. `online_backup`
is this program's ONE use of SQLite's online backup API: one backup step is one read transaction, so the
copy holds a consistent state even while rvm-edge writes. Everything else here is about where the copy
goes, who owns what SQLite leaves behind, and what a restored copy holds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from rvm_backup.config import SqliteEntry
from rvm_backup.errors import BackupError
from rvm_backup.files import fsync_dir, make_private_dir


def readonly_uri(path: str) -> str:
    """A read-only URI: a backup must never create a database (fresh device) or write to a live one."""
    return Path(path).absolute().as_uri() + "?mode=ro"


def integrity(conn: sqlite3.Connection) -> str:
    """PRAGMA integrity_check's verdict: "ok", or its first findings joined (what the operator needs)."""
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows[:5])


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version rvm-edge keeps in PRAGMA user_version (a restore must match the release)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def sidecars(source: str) -> list[Path]:
    """The -wal and -shm files SQLite keeps beside a WAL database."""
    return [Path(source + suffix) for suffix in ("-wal", "-shm")]


def give_sidecars_to_owner(source: str, created: list[Path]) -> None:
    """A read-only connection can create -wal/-shm (when rvm-edge is stopped); as root they would be
    root's and the service could no longer open its database, so they get the database's owner and mode."""
    info = os.stat(source)
    for path in created:
        with contextlib.suppress(OSError):  # gone again, or not root: nothing better to do
            os.chown(path, info.st_uid, info.st_gid)
            os.chmod(path, info.st_mode & 0o666)


def online_backup(source: str, tmp: str) -> tuple[str, int]:
    """Copy `source` into `tmp` in one backup step (one read transaction: a consistent state even while
    rvm-edge writes), make the copy a self-contained rollback-journal file, and check it.
    Returns (integrity verdict, user_version) of the copy."""
    src = sqlite3.connect(readonly_uri(source), uri=True, timeout=60)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
            return integrity(dst), user_version(dst)
        finally:
            dst.close()
    finally:
        src.close()


def copy_database(entry: SqliteEntry) -> dict[str, Any]:
    """A consistent, checked copy of one live database, renamed into place only once it passed."""
    copy = Path(entry.copy)
    make_private_dir(str(copy.parent))
    missing = [path for path in sidecars(entry.source) if not path.exists()]
    fd, tmp = tempfile.mkstemp(dir=copy.parent, prefix=f".{copy.name}.", suffix=".tmp")
    os.close(fd)
    try:
        verdict, version = online_backup(entry.source, tmp)
        if verdict != "ok":
            raise BackupError(f"{entry.source}: the copy fails PRAGMA integrity_check: {verdict}")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, copy)
    except sqlite3.Error as exc:
        raise BackupError(f"{entry.source}: cannot copy the database: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        give_sidecars_to_owner(entry.source, [path for path in missing if path.exists()])
    fsync_dir(copy.parent)
    return {"copy": entry.copy, "bytes": copy.stat().st_size, "integrity": "ok", "user_version": version}


def skip_missing_database(entry: SqliteEntry) -> dict[str, Any]:
    """A fresh device has no database yet: not an error. An old copy would misrepresent it, so it goes."""
    stale = Path(entry.copy)
    removed = stale.exists()
    if removed:
        stale.unlink()
    return {"skipped": "the source does not exist (a fresh device has none yet)", "removed_old_copy": removed}


def inspect_restored(entry: SqliteEntry, target: Path) -> dict[str, Any]:
    """Check a restored copy (restic restores absolute paths under the target) and read its schema version."""
    restored = target / entry.copy.lstrip("/")
    found: dict[str, Any] = {"source": entry.source, "restored": str(restored)}
    if not restored.is_file():
        note = "this snapshot holds no copy of this database (the source did not exist when it was taken)"
        return {**found, "restored": None, "integrity": None, "user_version": None, "note": note}
    try:
        conn = sqlite3.connect(readonly_uri(str(restored)), uri=True)
        try:
            return {**found, "integrity": integrity(conn), "user_version": user_version(conn)}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {**found, "integrity": f"cannot open it as a database: {exc}", "user_version": None}
