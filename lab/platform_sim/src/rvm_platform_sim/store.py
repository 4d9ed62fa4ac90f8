"""SQLite storage of machines, queued commands and everything the devices sent.

Everything the simulator receives is kept so tests can prove that nothing was lost or sent twice.
One connection used from the event loop thread: every statement is short (a few hundred
microseconds with WAL and ``synchronous=NORMAL``), requests are handled one at a time with
respect to the database, and that serialisation is what makes "one batch is one transaction"
and "a command is handed out once" trivially true.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvm_platform_sim.timeutil import iso8601, iso8601_precise, now_utc

SCHEMA_VERSION = 1
_KEY_ALPHABET = string.ascii_letters + string.digits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    api_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'suspended')),
    technician TEXT,
    timezone TEXT NOT NULL DEFAULT 'Asia/Jakarta',
    is_maintenance_mode INTEGER NOT NULL DEFAULT 0,
    bin_full_threshold_percent INTEGER NOT NULL DEFAULT 90,
    camera_idle_timeout_sec INTEGER NOT NULL DEFAULT 60,
    motor_speed_delay REAL NOT NULL DEFAULT 0.005,
    ai_target_version TEXT NOT NULL DEFAULT 'v1.0.0',
    ai_hash TEXT,
    ai_update_source_url TEXT,
    hardware_id TEXT,
    ip_local TEXT,
    ip_vpn TEXT,
    last_handshake_at TEXT,
    last_heartbeat_at TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id INTEGER NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    delivered_at TEXT,
    heartbeat_id INTEGER
);
CREATE TABLE IF NOT EXISTS handshakes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id INTEGER NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id INTEGER NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    received_at TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deposits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id INTEGER NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    session_id TEXT,
    data TEXT NOT NULL,
    deposit_id TEXT,
    image BLOB NOT NULL,
    image_sha256 TEXT NOT NULL,
    image_size INTEGER NOT NULL,
    image_type TEXT NOT NULL,
    image_filename TEXT NOT NULL,
    image_name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS offline_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id INTEGER NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    received_at TEXT NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS offline_transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id INTEGER NOT NULL REFERENCES offline_batches(id) ON DELETE CASCADE,
    machine_id INTEGER NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    position TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    items TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    machine_id INTEGER,
    status INTEGER,
    fault TEXT NOT NULL DEFAULT '',
    duration_ms REAL NOT NULL
);
"""

_DATA_TABLES = (
    "requests",
    "offline_transactions",
    "offline_batches",
    "deposits",
    "heartbeats",
    "handshakes",
    "commands",
)


class SyncAborted(Exception):
    """The injected failure in the middle of an offline batch; the batch's transaction rolls back."""


class DuplicateKey(Exception):
    """An API key that another machine already uses."""


def new_api_key() -> str:
    """``rvm_`` followed by 32 random letters and digits, the platform's key format."""
    return "rvm_" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


@dataclass(frozen=True)
class StoredDeposit:
    id: int
    image_name: str
    received_at: str


class Store:
    """The simulator's database. Methods are small, synchronous and commit before returning."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any exception (which then propagates)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # --- machines -------------------------------------------------------------------------

    def create_machine(
        self,
        name: str,
        api_key: str | None,
        technician: str | None,
        timezone: str,
    ) -> dict[str, Any]:
        key = api_key or new_api_key()
        try:
            with self.transaction() as db:
                cur = db.execute(
                    "INSERT INTO machines (uuid, name, api_key, technician, timezone, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (str(uuid.uuid4()), name, key, technician, timezone, iso8601_precise(now_utc())),
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(key) from exc
        machine = self.machine(int(cur.lastrowid or 0))
        assert machine is not None
        return machine

    def machine(self, machine_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM machines WHERE id = ?", (machine_id,)).fetchone()
        return dict(row) if row else None

    def machine_by_key(self, api_key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM machines WHERE api_key = ?", (api_key,)).fetchone()
        return dict(row) if row else None

    def machines(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM machines ORDER BY id")]

    def update_machine(self, machine_id: int, **fields: Any) -> dict[str, Any] | None:
        """Set columns by name; callers pass only column names they control (never user keys)."""
        if fields:
            columns = ", ".join(f"{name} = ?" for name in fields)
            try:
                with self.transaction() as db:
                    db.execute(f"UPDATE machines SET {columns} WHERE id = ?", (*fields.values(), machine_id))
            except sqlite3.IntegrityError as exc:
                raise DuplicateKey(str(fields.get("api_key"))) from exc
        return self.machine(machine_id)

    # --- commands -------------------------------------------------------------------------

    def queue_command(self, machine_id: int, action: str) -> dict[str, Any]:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO commands (machine_id, action, timestamp) VALUES (?, ?, ?)",
                (machine_id, action, iso8601(now_utc())),
            )
        return dict(self._db.execute("SELECT * FROM commands WHERE id = ?", (cur.lastrowid,)).fetchone())

    def commands(self, machine_id: int | None = None) -> list[dict[str, Any]]:
        return self._select("commands", machine_id)

    # --- what the devices send ------------------------------------------------------------

    def record_handshake(self, machine_id: int, body: Any, machine_fields: dict[str, Any]) -> None:
        received = iso8601_precise(now_utc())
        with self.transaction() as db:
            db.execute(
                "INSERT INTO handshakes (machine_id, received_at, body) VALUES (?, ?, ?)",
                (machine_id, received, json.dumps(body)),
            )
            fields = {**machine_fields, "last_handshake_at": received}
            columns = ", ".join(f"{name} = ?" for name in fields)
            db.execute(f"UPDATE machines SET {columns} WHERE id = ?", (*fields.values(), machine_id))

    def record_heartbeat(
        self, machine_id: int, body: Any, accepted: bool, machine_fields: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Store the heartbeat; when accepted, hand out the queued commands (and forget them)."""
        received = iso8601_precise(now_utc())
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO heartbeats (machine_id, received_at, accepted, body) VALUES (?, ?, ?, ?)",
                (machine_id, received, int(accepted), json.dumps(body)),
            )
            if not accepted:
                return []
            fields = {**machine_fields, "last_heartbeat_at": received}
            columns = ", ".join(f"{name} = ?" for name in fields)
            db.execute(f"UPDATE machines SET {columns} WHERE id = ?", (*fields.values(), machine_id))
            pending = [
                dict(r)
                for r in db.execute(
                    "SELECT id, action, timestamp FROM commands"
                    " WHERE machine_id = ? AND delivered_at IS NULL ORDER BY id",
                    (machine_id,),
                )
            ]
            db.execute(
                "UPDATE commands SET delivered_at = ?, heartbeat_id = ?"
                " WHERE machine_id = ? AND delivered_at IS NULL",
                (received, cur.lastrowid, machine_id),
            )
        return pending

    def record_deposit(
        self,
        machine_id: int,
        status: str,
        session_id: str | None,
        data_json: str,
        image: bytes,
        image_type: str,
        image_filename: str,
        image_ext: str,
    ) -> StoredDeposit:
        received = iso8601_precise(now_utc())
        parsed = json.loads(data_json)
        deposit_id = parsed.get("deposit_id") if isinstance(parsed, dict) else None
        image_name = f"{uuid.uuid4()}.{image_ext}"
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO deposits (machine_id, received_at, status, session_id, data, deposit_id, image,"
                " image_sha256, image_size, image_type, image_filename, image_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    machine_id,
                    received,
                    status,
                    session_id,
                    data_json,
                    None if deposit_id is None else str(deposit_id),
                    image,
                    hashlib.sha256(image).hexdigest(),
                    len(image),
                    image_type,
                    image_filename,
                    image_name,
                ),
            )
        return StoredDeposit(id=int(cur.lastrowid or 0), image_name=image_name, received_at=received)

    def record_offline_batch(
        self, machine_id: int, transactions: list[tuple[str, Any]], fail_after: int | None
    ) -> int:
        """Store the whole batch in one transaction.

        ``fail_after`` (a test fault) stores that many transactions and then fails, so the rollback
        of rows already written is what a test observes.
        """
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO offline_batches (machine_id, received_at, count) VALUES (?, ?, ?)",
                (machine_id, iso8601_precise(now_utc()), len(transactions)),
            )
            for done, (position, tx) in enumerate(transactions):
                if fail_after is not None and done >= fail_after:
                    break
                db.execute(
                    "INSERT INTO offline_transactions (batch_id, machine_id, position, timestamp, items)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (cur.lastrowid, machine_id, position, str(tx["timestamp"]), json.dumps(tx["items"])),
                )
            if fail_after is not None:
                stored = min(fail_after, len(transactions))
                raise SyncAborted(f"injected failure after {stored} of {len(transactions)} transactions")
        return len(transactions)

    def record_request(
        self,
        endpoint: str,
        method: str,
        path: str,
        machine_id: int | None,
        status: int | None,
        fault: str,
        duration_ms: float,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO requests (received_at, endpoint, method, path, machine_id, status, fault,"
                " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (iso8601_precise(now_utc()), endpoint, method, path, machine_id, status, fault, duration_ms),
            )

    # --- read-back ------------------------------------------------------------------------

    def _select(self, table: str, machine_id: int | None, columns: str = "*") -> list[dict[str, Any]]:
        if machine_id is None:
            rows = self._db.execute(f"SELECT {columns} FROM {table} ORDER BY id")
        else:
            rows = self._db.execute(
                f"SELECT {columns} FROM {table} WHERE machine_id = ? ORDER BY id", (machine_id,)
            )
        return [dict(r) for r in rows]

    def handshakes(self, machine_id: int | None) -> list[dict[str, Any]]:
        return [{**r, "body": json.loads(r["body"])} for r in self._select("handshakes", machine_id)]

    def heartbeats(self, machine_id: int | None) -> list[dict[str, Any]]:
        return [
            {**r, "accepted": bool(r["accepted"]), "body": json.loads(r["body"])}
            for r in self._select("heartbeats", machine_id)
        ]

    def deposits(self, machine_id: int | None) -> list[dict[str, Any]]:
        columns = (
            "id, machine_id, received_at, status, session_id, data, deposit_id, image_sha256,"
            " image_size, image_type, image_filename, image_name"
        )
        return [{**r, "data": json.loads(r["data"])} for r in self._select("deposits", machine_id, columns)]

    def deposit_image(self, deposit_id: int) -> tuple[bytes, str] | None:
        row = self._db.execute(
            "SELECT image, image_type FROM deposits WHERE id = ?", (deposit_id,)
        ).fetchone()
        return (bytes(row["image"]), str(row["image_type"])) if row else None

    def image_by_name(self, image_name: str) -> tuple[bytes, str] | None:
        row = self._db.execute(
            "SELECT image, image_type FROM deposits WHERE image_name = ?", (image_name,)
        ).fetchone()
        return (bytes(row["image"]), str(row["image_type"])) if row else None

    def offline_transactions(self, machine_id: int | None) -> list[dict[str, Any]]:
        return [
            {**r, "items": json.loads(r["items"])} for r in self._select("offline_transactions", machine_id)
        ]

    def offline_batches(self, machine_id: int | None) -> list[dict[str, Any]]:
        return self._select("offline_batches", machine_id)

    def requests(self, machine_id: int | None) -> list[dict[str, Any]]:
        return self._select("requests", machine_id)

    def reset(self, keep_machines: bool) -> None:
        """Forget everything received; machines (and their keys) too unless asked to keep them."""
        with self.transaction() as db:
            for table in _DATA_TABLES:
                db.execute(f"DELETE FROM {table}")
            if not keep_machines:
                db.execute("DELETE FROM machines")
                db.execute("DELETE FROM sqlite_sequence")
