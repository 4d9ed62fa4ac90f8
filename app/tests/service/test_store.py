"""The local store: migrations both ways, pruning that keeps records, backup and restore."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from rvm_edge.cli import main
from rvm_edge.service.store import (
    DB_NAME,
    LATEST,
    Store,
    StoreError,
    check,
    connect,
    database_schema,
    migrate,
    schema_version,
)


def fill(store: Store, n: int, image_size: int = 1000) -> None:
    for i in range(n):
        store.record(f"d{i}", "ACCEPTED", "ok", {"deposit_id": f"d{i}"}, bytes(image_size), "image/jpeg")


def test_a_record_is_committed_and_visible_to_another_connection(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.record("d0", "ACCEPTED", "ok", {"deposit_id": "d0"}, b"img", "image/jpeg")
    other = sqlite3.connect(str(tmp_path / DB_NAME))
    assert other.execute("SELECT deposit_id, state FROM deposits").fetchall() == [("d0", "pending")]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_go_down_and_up_keeping_the_data(tmp_path: Path) -> None:
    store = Store(tmp_path)
    fill(store, 3)
    store.close()
    conn = connect(tmp_path / DB_NAME)
    assert schema_version(conn) == LATEST
    assert migrate(conn, 1) == [f"down 2: {'outbox index and image size column for quota accounting'}"]
    cols = [r[1] for r in conn.execute("PRAGMA table_info(deposits)")]
    assert "image_bytes" not in cols and conn.execute("SELECT COUNT(*) FROM deposits").fetchone()[0] == 3
    migrate(conn, LATEST)
    assert conn.execute("SELECT SUM(image_bytes) FROM deposits").fetchone()[0] == 3000  # recomputed
    conn.close()


def test_a_newer_schema_is_refused_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    Store(tmp_path).close()
    conn = sqlite3.connect(str(tmp_path / DB_NAME))
    conn.execute("INSERT INTO schema_migrations VALUES (99, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"rvm-edge db migrate --to {LATEST}"):
        Store(tmp_path)


def test_pruning_clears_images_oldest_sent_first_and_never_drops_a_record(tmp_path: Path) -> None:
    clock = [1000.0]
    store = Store(tmp_path, clock=lambda: clock[0])
    fill(store, 10)
    for seq in (1, 2, 3, 4):
        store.mark_sent(seq)
    clock[0] += 86400 * 2
    assert store.prune_images(max_bytes=10**9, retention_s=86400) == 4  # sent and older than retention
    assert store.prune_images(max_bytes=3000, retention_s=10**9) == 3  # the quota takes pending ones last
    rows = (
        sqlite3.connect(str(tmp_path / DB_NAME))
        .execute("SELECT seq, image IS NOT NULL FROM deposits ORDER BY seq")
        .fetchall()
    )
    assert len(rows) == 10 and [s for s, has in rows if has] == [8, 9, 10]
    assert store.status().pending == 6


def recount(path: Path) -> dict[str, int]:
    """The figures status() gives, counted the slow way (one pass over every row)."""
    conn = sqlite3.connect(str(path / DB_NAME))
    row = conn.execute(
        "SELECT SUM(state = 'pending'), SUM(state = 'parked'), SUM(state = 'sent'), "
        "COALESCE(SUM(image_bytes), 0), SUM(state = 'pending' AND attempts > 0) FROM deposits"
    ).fetchone()
    conn.close()
    names = ("pending", "parked", "sent", "image_bytes", "unconfirmed")
    return dict(zip(names, (int(x or 0) for x in row), strict=True))


def figures(store: Store) -> dict[str, int]:
    st = store.status()
    return {k: getattr(st, k) for k in ("pending", "parked", "sent", "image_bytes", "unconfirmed")}


def test_status_matches_a_full_recount_through_records_sends_parks_prunes_and_a_restart(
    tmp_path: Path,
) -> None:
    """status() no longer reads every row (it runs on every /readyz and /metrics call): its figures
    must still be the table's, whatever happened to it."""
    clock = [1000.0]
    store = Store(tmp_path, clock=lambda: clock[0])
    fill(store, 8, image_size=1000)
    store.record("no-image", "REJECTED", "empty", {"deposit_id": "no-image"}, None, None)
    assert figures(store) == recount(tmp_path) == {
        "pending": 9, "parked": 0, "sent": 0, "image_bytes": 8000, "unconfirmed": 0,
    }  # fmt: skip
    store.mark_attempt(1)
    store.mark_sent(1)
    store.mark_sent(2)
    store.mark_attempt(3)  # the reply never came
    store.mark_failed(4, "422 refused", park=True)
    assert figures(store) == recount(tmp_path)
    assert figures(store)["unconfirmed"] == 1 and figures(store)["parked"] == 1
    clock[0] += 86400 * 2
    assert store.prune_images(max_bytes=10**9, retention_s=86400) == 2
    assert store.prune_images(max_bytes=3000, retention_s=10**9) == 3
    assert figures(store) == recount(tmp_path) and figures(store)["image_bytes"] == 3000
    with pytest.raises(sqlite3.IntegrityError):  # a deposit id twice: rolled back, nothing counted
        store.record("d5", "ACCEPTED", "ok", {"deposit_id": "d5"}, bytes(500), "image/jpeg")
    assert store.requeue_parked() == 1
    assert figures(store) == recount(tmp_path)
    store.close()
    again = Store(tmp_path, clock=lambda: clock[0])  # the running sum starts from the table
    assert figures(again) == recount(tmp_path)
    again.close()


def test_backup_restore_roundtrip_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.yml"
    config.write_text(
        f"profile: dev\ndevice: {{id: d}}\nmodels: {{manifest: /m.json}}\nstorage: {{data_dir: {data}}}\n"
    )
    store = Store(data)
    fill(store, 5)
    store.close()
    backup = tmp_path / "backup.sqlite3"
    assert main(["db", "backup", "--config", str(config), str(backup)]) == 0
    assert check(backup) == []
    store = Store(data)
    store.record("late", "REJECTED", "r", {}, None, None)  # a change after the backup...
    store.close()
    assert main(["db", "restore", "--config", str(config), str(backup)]) == 0  # ...is undone
    assert Store(data).status().pending == 5
    assert (data / f"{DB_NAME}.pre-restore").is_file()
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    assert main(["db", "restore", "--config", str(config), str(corrupt)]) == 1
    assert "refusing to restore" in capsys.readouterr().err
    assert main(["db", "check", "--config", str(config)]) == 0


def test_db_version_reports_both_schemas_without_migrating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.yml"
    config.write_text(
        f"profile: dev\ndevice: {{id: d}}\nmodels: {{manifest: /m.json}}\nstorage: {{data_dir: {data}}}\n"
    )
    assert main(["db", "version", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "supported": LATEST,
        "database": None,
        "path": str(data / DB_NAME),
    }
    Store(data).close()
    conn = connect(data / DB_NAME)
    migrate(conn, 1)
    conn.close()
    assert main(["db", "version", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["database"] == 1
    assert database_schema(data / DB_NAME) == 1  # reading did not migrate it up
    (data / DB_NAME).write_bytes(b"not a database" * 100)
    assert main(["db", "version", "--config", str(config)]) == 1
    assert "rvm-edge db check" in capsys.readouterr().err


def test_restore_keeps_what_a_crashed_service_left_in_the_wal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a kill -9 the newest deposits can live only in the WAL (checkpoints run in the
    background). A restore removes that WAL, so the copy it keeps aside (.pre-restore) must be
    made through SQLite, not as a file copy of the main database, or those deposits are lost."""
    running = tmp_path / "running"
    store = Store(running)  # no checkpointer: every commit stays in the WAL, as between checkpoints
    fill(store, 3)
    crashed = tmp_path / "data"  # the files exactly as a kill -9 leaves them: main file + WAL
    crashed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(running / f"{DB_NAME}{suffix}", crashed / f"{DB_NAME}{suffix}")
    store.close()
    assert (crashed / f"{DB_NAME}-wal").stat().st_size > 0
    config = tmp_path / "config.yml"
    config.write_text(
        f"profile: dev\ndevice: {{id: d}}\nmodels: {{manifest: /m.json}}\nstorage: {{data_dir: {crashed}}}\n"
    )
    empty = tmp_path / "empty-backup.sqlite3"
    Store(tmp_path / "empty").close()
    shutil.copyfile(tmp_path / "empty" / DB_NAME, empty)
    assert main(["db", "restore", "--config", str(config), str(empty)]) == 0
    kept = sqlite3.connect(str(crashed / f"{DB_NAME}.pre-restore"))
    assert kept.execute("SELECT COUNT(*) FROM deposits").fetchone()[0] == 3
    kept.close()
    assert Store(crashed).status().pending == 0  # the restored (empty) database, no stale WAL replayed
    assert not (crashed / f"{DB_NAME}.restore.tmp").exists()
