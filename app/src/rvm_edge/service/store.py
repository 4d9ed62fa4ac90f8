"""The local store: every recorded item and its outbox state in one SQLite database (WAL).

Why one database for results and outbox: recording an item and queueing it for the platform
must be one atomic commit, so a kill -9 or a power cut leaves either both or neither. The
connection runs ``journal_mode=WAL`` with ``synchronous=FULL`` (each commit is fsynced to the
WAL before ``record`` returns: durable across power loss, about a millisecond here).

The schema is versioned; every migration has a downgrade so a rollback to an older release
can first bring the database back to the schema that release knows (``rvm-edge db migrate``).
Images live in the database (a BLOB per deposit) so the record and its image commit together;
pruning clears the image and keeps the record.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "rvm-edge.sqlite3"
VACUUM_CHUNK_PAGES = 256  # 1 MiB of 4 KiB pages: what the WAL grows by per step of a reclaim
PRUNE_BATCH_BYTES = 1 << 20  # images cleared per transaction (each freed page goes through the WAL)


class StoreError(Exception):
    """The database cannot be used as it is; the message says which file and what to run."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    up: tuple[str, ...]
    down: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "deposits (results + outbox state) and offline transactions",
        (
            """CREATE TABLE deposits (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                deposit_id TEXT NOT NULL UNIQUE,
                created_at REAL NOT NULL,
                frame_index INTEGER,
                status TEXT NOT NULL,
                material TEXT,
                reason TEXT NOT NULL,
                data TEXT NOT NULL,
                image BLOB,
                image_type TEXT,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                last_attempt_at REAL,
                sent_at REAL,
                last_error TEXT)""",
            """CREATE TABLE offline_transactions (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                deposit_seq INTEGER NOT NULL REFERENCES deposits(seq),
                timestamp TEXT NOT NULL,
                items TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                sent_at REAL,
                last_error TEXT)""",
        ),
        ("DROP TABLE offline_transactions", "DROP TABLE deposits"),
    ),
    Migration(
        2,
        "outbox index and image size column for quota accounting",
        (
            "CREATE INDEX deposits_state_seq ON deposits(state, seq)",
            "ALTER TABLE deposits ADD COLUMN image_bytes INTEGER NOT NULL DEFAULT 0",
            "UPDATE deposits SET image_bytes = COALESCE(length(image), 0)",
            "CREATE INDEX offline_state_seq ON offline_transactions(state, seq)",
        ),
        (
            "DROP INDEX offline_state_seq",
            "ALTER TABLE deposits DROP COLUMN image_bytes",
            "DROP INDEX deposits_state_seq",
        ),
    ),
)
LATEST = MIGRATIONS[-1].version


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the durability settings; autocommit off (explicit transactions)."""
    conn = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # before the first table exists this makes freed image pages returnable to the OS
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"{path}: cannot switch to WAL mode (got {mode}); is the file system read-only?")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    # Debian builds SQLite with SECURE_DELETE: every page freed (a pruned image) would be zeroed and
    # written through the WAL, twice the I/O of the prune on a partition that may be full. FAST zeroes
    # only what costs nothing extra; the pruned pages do not stay in the file either way: the
    # incremental vacuum right after moves pages into them or cuts them off (Store.reclaim).
    conn.execute("PRAGMA secure_delete=FAST")
    conn.execute(f"PRAGMA journal_size_limit={64 << 20}")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, target: int = LATEST, path: Path | None = None) -> list[str]:
    """Bring the schema to ``target`` (up or down), one transaction per step; returns what was done."""
    current = schema_version(conn)
    known = {m.version for m in MIGRATIONS}
    if current > LATEST:
        raise StoreError(
            f"{path or 'database'}: schema version {current} is newer than this rvm-edge knows ({LATEST}); "
            f"before rolling back, run `rvm-edge db migrate --to {LATEST}` with the newer release"
        )
    if target != 0 and target not in known:
        raise StoreError(f"unknown schema version {target} (known: 0..{LATEST})")
    done: list[str] = []
    steps = (
        [m for m in MIGRATIONS if current < m.version <= target]
        if target >= current
        else [m for m in reversed(MIGRATIONS) if target < m.version <= current]
    )
    for m in steps:
        up = target >= current
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in m.up if up else m.down:
                conn.execute(sql)
            if up:
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (m.version, time.time()))
            else:
                conn.execute("DELETE FROM schema_migrations WHERE version = ?", (m.version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.append(f"{'up' if up else 'down'} {m.version}: {m.description}")
    return done


@dataclass(frozen=True)
class DepositRow:
    seq: int
    deposit_id: str
    created_at: float
    status: str
    data: str
    image: bytes | None
    image_type: str | None
    attempts: int


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    parked: int
    sent: int
    oldest_pending_age_s: float | None
    offline_pending: int
    image_bytes: int
    unconfirmed: int  # pending deposits with an attempt whose reply never came

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


class Store:
    """Thread-safe access to the database: one connection, one lock, short transactions."""

    def __init__(self, data_dir: Path, clock: Any = time.time) -> None:
        self.path = data_dir / DB_NAME
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._conn = connect(self.path)
            migrate(self._conn, LATEST, self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: {exc}; check it with `rvm-edge db check` or restore with `rvm-edge db restore`"
            ) from None
        except OSError as exc:
            raise StoreError(f"{data_dir}: {exc.strerror}; storage.data_dir must be writable") from None
        self._lock = threading.Lock()
        self._clock = clock
        # Bytes of images kept, for status() on every /readyz and /metrics call: summing the column
        # reads every row (~20 ms at a year of deposits, ~270 ms p99 under load), so it is summed
        # once here and then follows the commits that change it (record, prune_images), under _lock.
        self._image_bytes = int(
            self._conn.execute("SELECT COALESCE(SUM(image_bytes), 0) FROM deposits").fetchone()[0]
        )
        self._image_bytes_at_commit: int | None = None  # set inside a transaction, kept if it commits
        self.changed = threading.Condition()  # notified after each record (the sender waits on it)
        self.records = 0  # deposits recorded through this Store; read and changed under `changed`
        # Checkpoints (copying the WAL into the database, with fsyncs of their own) would otherwise
        # run inside whichever commit crosses the threshold: that commit would take tens of ms.
        # A background thread does them instead, on its own connection.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._stop_checkpoints = threading.Event()
        self._written = threading.Event()  # set by every commit: the checkpointer sleeps until one
        self._last_write = 0.0
        self._checkpointer: threading.Thread | None = None

    def start_checkpointer(
        self, interval_s: float = 2.0, quiet_s: float = 0.3, max_wait_s: float = 30.0
    ) -> None:
        """Checkpoint every ``interval_s``, in a pause between writes (``quiet_s`` without a
        commit) so a checkpoint's own fsyncs do not queue behind, or in front of, a deposit's;
        after ``max_wait_s`` without a pause it checkpoints anyway (the WAL must not grow forever).
        """

        def run() -> None:
            conn = connect(self.path)
            try:
                last = time.monotonic()
                while True:
                    asleep = time.monotonic()
                    self._written.wait()  # an idle device writes nothing: no reason to wake
                    if time.monotonic() - asleep > interval_s:
                        last = time.monotonic()  # writes resumed: wait for a pause as usual
                    if self._stop_checkpoints.wait(interval_s):
                        break
                    self._written.clear()
                    while not self._stop_checkpoints.is_set():
                        idle = time.monotonic() - self._last_write
                        if idle >= quiet_s or time.monotonic() - last >= max_wait_s:
                            break
                        self._stop_checkpoints.wait(quiet_s - idle)
                    with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    last = time.monotonic()
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()

        self._checkpointer = threading.Thread(target=run, name="rvm-db-checkpoint", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        self._stop_checkpoints.set()
        self._written.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._conn.close()

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``durable=False`` skips the commit's fsync (WAL synchronous=NORMAL):
        it survives a crash, and a power cut only loses it together with the next durable commit."""
        with self._lock:
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
                if self._image_bytes_at_commit is not None:
                    self._image_bytes = self._image_bytes_at_commit
                self._last_write = time.monotonic()
                self._written.set()
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL among them); a second
                # ROLLBACK would raise "no transaction is active" and hide the error that matters
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._image_bytes_at_commit = None
                if not durable:
                    self._conn.execute("PRAGMA synchronous=FULL")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- writing ---------------------------------------------------------------------------
    def record(
        self,
        deposit_id: str,
        status: str,
        reason: str,
        data: dict[str, Any],
        image: bytes | None,
        image_type: str | None,
        frame_index: int | None = None,
        material: str | None = None,
        offline_items: list[dict[str, Any]] | None = None,
        timestamp: str | None = None,
    ) -> int:
        """Commit one item (and its offline transaction when given) durably; returns its seq."""
        now = self._clock()
        with self._tx() as c:
            cur = c.execute(
                "INSERT INTO deposits (deposit_id, created_at, frame_index, status, material, reason, data,"
                " image, image_type, image_bytes) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    deposit_id,
                    now,
                    frame_index,
                    status,
                    material,
                    reason,
                    json.dumps(data, separators=(",", ":")),
                    image,
                    image_type,
                    len(image) if image else 0,
                ),
            )
            seq = int(cur.lastrowid or 0)
            self._image_bytes_at_commit = self._image_bytes + (len(image) if image else 0)
            if offline_items:
                c.execute(
                    "INSERT INTO offline_transactions (deposit_seq, timestamp, items) VALUES (?,?,?)",
                    (seq, timestamp, json.dumps(offline_items)),
                )
        with self.changed:
            self.records += 1
            self.changed.notify_all()
        return seq

    def next_pending(self) -> DepositRow | None:
        rows = self._query(
            "SELECT seq, deposit_id, created_at, status, data, image, image_type, attempts FROM deposits "
            "WHERE state = 'pending' ORDER BY seq LIMIT 1"
        )
        return DepositRow(**dict(rows[0])) if rows else None

    def mark_attempt(self, seq: int) -> None:
        """Committed *before* the request: after a crash, attempts > 0 means 'may have arrived'.

        Not fsynced: it only decides whether a resend is logged as a possible duplicate, so a
        power cut that loses it changes a log line, never what is delivered.
        """
        with self._tx(durable=False) as c:
            c.execute(
                "UPDATE deposits SET attempts = attempts + 1, last_attempt_at = ? WHERE seq = ?",
                (self._clock(), seq),
            )

    def mark_sent(self, seq: int) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE deposits SET state = 'sent', sent_at = ?, last_error = NULL WHERE seq = ?",
                (self._clock(), seq),
            )

    def mark_failed(self, seq: int, error: str, park: bool = False) -> None:
        """Only parking is fsynced: the last error of a pending deposit is informational."""
        with self._tx(durable=park) as c:
            c.execute(
                "UPDATE deposits SET last_error = ?, state = CASE WHEN ? THEN 'parked' ELSE state END "
                "WHERE seq = ?",
                (error[:500], park, seq),
            )

    def requeue_parked(self) -> int:
        """``outbox flush``: parked deposits go back into the queue (in their original order)."""
        with self._tx() as c:
            return c.execute("UPDATE deposits SET state = 'pending' WHERE state = 'parked'").rowcount

    def pending_offline(self, limit: int) -> list[sqlite3.Row]:
        return self._query(
            "SELECT seq, timestamp, items FROM offline_transactions WHERE state = 'pending' "
            "ORDER BY seq LIMIT ?",
            (limit,),
        )

    def mark_offline(self, seqs: list[int], state: str, error: str | None = None) -> None:
        with self._tx() as c:
            c.executemany(
                "UPDATE offline_transactions SET state = ?, attempts = attempts + 1, sent_at = ?, "
                "last_error = ? WHERE seq = ?",
                [(state, self._clock() if state == "sent" else None, error, s) for s in seqs],
            )

    # -- retention -------------------------------------------------------------------------
    def prune_images(
        self, max_bytes: int, retention_s: float, states: tuple[str, ...] = ("sent", "parked", "pending")
    ) -> int:
        """Clear images (never records): older than retention once sent; then oldest first to fit,
        from the deposits in ``states``, in that order.

        A pending deposit's image is cleared only when the quota cannot be met otherwise; it is
        then uploaded with a placeholder image and ``image_pruned: true`` in its data. The disk
        guard passes ``("sent",)``: for space it clears only what the platform has already.
        """
        cleared = 0
        batch: list[int] = []
        size = 0
        for seq, nbytes in self._prune_victims(max_bytes, self._clock() - retention_s, states):
            batch.append(seq)
            size += nbytes
            if size >= PRUNE_BATCH_BYTES:
                cleared += self._clear_images(batch)
                batch, size = [], 0
        if batch:
            cleared += self._clear_images(batch)
        return cleared

    def _prune_victims(self, max_bytes: int, cutoff: float, states: tuple[str, ...]) -> list[tuple[int, int]]:
        """(seq, image bytes) of the images to clear, in order: sent ones past retention, then the
        oldest of ``states`` until the rest fits in ``max_bytes``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, image_bytes, state, created_at FROM deposits WHERE image IS NOT NULL ORDER BY seq"
            ).fetchall()
        victims = [
            (r["seq"], r["image_bytes"]) for r in rows if r["state"] == "sent" and r["created_at"] < cutoff
        ]
        chosen = {seq for seq, _ in victims}
        total = sum(r["image_bytes"] for r in rows) - sum(n for _, n in victims)
        for pass_state in states:
            for r in rows:
                if total <= max_bytes:
                    return victims
                if r["state"] == pass_state and r["seq"] not in chosen:
                    victims.append((r["seq"], r["image_bytes"]))
                    total -= r["image_bytes"]
        return victims

    def _clear_images(self, seqs: list[int]) -> int:
        """Clear one batch of images (records kept), then give their pages back (reclaim).

        In batches of PRUNE_BATCH_BYTES because every page freed is written to the WAL first (Debian's
        SQLite is built with SECURE_DELETE, which zeroes freed pages; this connection asks for FAST,
        but the vacuum that follows moves pages through the WAL too): one transaction for all the
        images of a nearly full partition needed more room than the partition had (SQLITE_FULL)."""
        marks = ",".join("?" * len(seqs))
        with self._tx() as c:
            freed = c.execute(
                f"SELECT COALESCE(SUM(image_bytes), 0) FROM deposits WHERE image IS NOT NULL AND seq IN ({marks})",
                seqs,
            ).fetchone()[0]
            n = c.execute(
                f"UPDATE deposits SET image = NULL, image_bytes = 0 WHERE image IS NOT NULL AND seq IN ({marks})",
                seqs,
            ).rowcount
            self._image_bytes_at_commit = self._image_bytes - int(freed)
        if n:
            self.reclaim()
        return n

    def reclaim(self) -> None:
        """Give the pages pruning freed back to the partition, a chunk at a time.

        The incremental vacuum moves pages from the end of the file into the free ones and writes
        every page it moves to the WAL first: freeing everything in one statement needs about as much
        room again in the WAL as it frees, so on a nearly full partition it filled the partition and
        the next commit failed (found by prodtest's disk-low fault: 87 MB cleared at 130 MB free).
        So it vacuums VACUUM_CHUNK_PAGES at a time, each followed by a full checkpoint that moves the
        WAL into the (now shorter) database and cuts the WAL to nothing; the lock is held per chunk,
        so a deposit waits for one chunk at most. (``executescript``: the pragma frees one page per
        step of its statement, and ``execute`` steps it once; Python 3.11's sqlite3 then resets a
        statement with no result columns, so the file never shrank.) A busy checkpoint (a reader in
        the way) only leaves a longer WAL for the next one."""
        with self._lock:
            free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
        for _ in range(free // VACUUM_CHUNK_PAGES + 2):  # bounded: each step frees up to a chunk
            if not self._vacuum_step():
                break

    def _vacuum_step(self) -> bool:
        """One chunk of reclaim(); False when no free page was left to give back."""
        with self._lock:
            if not self._conn.execute("PRAGMA freelist_count").fetchone()[0]:
                return False
            self._conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_CHUNK_PAGES})")
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True

    # -- reading ---------------------------------------------------------------------------
    def status(self) -> OutboxStatus:
        """The outbox in figures, cheap at any size (/readyz and /metrics ask on every call): the
        pending and parked rows through the (state, seq) index, the total from the table's b-tree
        (a deposit is pending, parked or sent; records are never deleted), images from the running
        sum. At a year of deposits (182 500 rows) ~1 ms where one pass over the table took ~56 ms."""
        now = self._clock()
        with self._lock:
            c = self._conn
            total = c.execute("SELECT COUNT(*) FROM deposits").fetchone()[0]
            pending, oldest, unconfirmed = c.execute(
                "SELECT COUNT(*), MIN(created_at), COALESCE(SUM(attempts > 0), 0) FROM deposits "
                "WHERE state = 'pending'"
            ).fetchone()
            parked = c.execute("SELECT COUNT(*) FROM deposits WHERE state = 'parked'").fetchone()[0]
            off = c.execute("SELECT COUNT(*) FROM offline_transactions WHERE state = 'pending'").fetchone()[0]
            image_bytes = self._image_bytes
        return OutboxStatus(
            pending=int(pending),
            parked=int(parked),
            sent=int(total) - int(pending) - int(parked),
            oldest_pending_age_s=None if oldest is None else max(0.0, now - oldest),
            offline_pending=int(off),
            image_bytes=image_bytes,
            unconfirmed=int(unconfirmed),
        )

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT seq, deposit_id, created_at, status, material, reason, state, attempts, last_error "
            "FROM deposits ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]


def check(path: Path) -> list[str]:
    """Problems with a database file (integrity, schema version); empty when it is usable."""
    if not path.is_file():
        return [f"{path}: no such database"]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [f"{path}: {exc}"]
    problems = [f"{path}: integrity: {r}" for r in result if r != "ok"]
    if version is None or version > LATEST:
        problems.append(f"{path}: schema version {version} (this rvm-edge knows up to {LATEST})")
    return problems


def database_schema(path: Path) -> int | None:
    """The schema version of a database file, read without changing it; None when there is none yet.

    Why read-only: the deploy asks this of the *new* release before it switches, while the old
    release still runs on the same file; opening it the normal way would migrate it.
    """
    if not path.is_file():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if found is None:
            return 0
        return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}; check it with `rvm-edge db check`") from None
    finally:
        conn.close()


def backup(path: Path, dest: Path, atomic: bool = True) -> None:
    """A consistent copy of the database at ``path`` (with what its WAL holds), safe while the
    service writes to it: SQLite's online backup API. The app's one way to copy a database:
    ``db backup`` (and the deploy's snapshots, which call it) and ``db restore`` use it.

    ``atomic`` writes a temporary file beside ``dest`` and renames it, so ``dest`` is either the
    old file or the complete copy; without it the caller stages ``dest`` itself."""
    tmp = dest.with_name(dest.name + ".tmp") if atomic else dest
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(str(path))
    try:
        out = sqlite3.connect(str(tmp))
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()
    if atomic:
        tmp.replace(dest)
