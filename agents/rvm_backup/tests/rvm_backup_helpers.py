"""Helpers for the rvm-backup end-to-end tests: a fake device tree in tmp_path, the driver run as production
runs it (the zipapp built by agents/zipapp.py, as a subprocess), real restic on a local repository, real SQLite.

Speed: restic derives the repository key with scrypt at parameters calibrated to ~0.5 s per command at
`restic init`, which would make this suite several times slower. `weaken_kdf` rewraps the master key of a
template repository with tiny scrypt parameters (the key file format of restic's design document: scrypt,
AES-256-CTR, Poly1305-AES), the same trick restic's own test suite plays with its low-security KDF
parameters. The data format is untouched; only the first-run test lets the script run `restic init` itself.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

REPO_ROOT = Path(__file__).resolve().parents[3]
ZIPAPP_BUILDER = REPO_ROOT / "agents" / "zipapp.py"
PACKAGE = REPO_ROOT / "agents" / "rvm_backup" / "src" / "rvm_backup"
ENTRY_POINT = "rvm_backup.cli:main"
# The interpreter that runs the driver: this one by default; RVM_BACKUP_DEVICE_PYTHON=python3.10 runs the
# whole suite on the Jetson's Python (JetPack 6) without installing pytest there.
DEVICE_PYTHON = os.environ.get("RVM_BACKUP_DEVICE_PYTHON") or sys.executable
PASSWORD = "rvm-Test-pw-Corr3ct-Horse-4711"
HOST = "rvm-test-07"
TAG = "rvm-edge"
USER_VERSION = 7


def restic_binary() -> str:
    """restic is a hard requirement of these tests: its absence is a broken setup, not a reason to skip."""
    found = shutil.which("restic")
    if found is None:
        pytest.fail(
            "restic is not installed (these tests run the real restic): run `make deps`", pytrace=False
        )
    return found


def build_driver(out: Path) -> Path:
    """The one file the backup role installs on a device, built by the same command the role runs."""
    subprocess.run(
        [sys.executable, str(ZIPAPP_BUILDER), str(PACKAGE), "--main", ENTRY_POINT, "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out


# ----------------------------------------------------------------------------------------- restic keys


def _poly1305(message: bytes, r_bytes: bytes, s_bytes: bytes) -> bytes:
    """Poly1305 (RFC 8439): restic's MAC is Poly1305 with s = AES_k(nonce)."""
    r = int.from_bytes(r_bytes, "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    prime = (1 << 130) - 5
    acc = 0
    for start in range(0, len(message), 16):
        acc = (acc + int.from_bytes(message[start : start + 16] + b"\x01", "little")) * r % prime
    return ((acc + int.from_bytes(s_bytes, "little")) % (1 << 128)).to_bytes(16, "little")


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _aes_ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _user_key(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes, bytes]:
    """scrypt output split as restic does: AES-256 key, then the MAC key as k (AES-128) || r."""
    derived = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=1 << 30, dklen=64)
    return derived[:32], derived[32:48], derived[48:64]


def weaken_kdf(repository: Path, password: str) -> None:
    """Replace the repository's only key by one that opens with scrypt N=16, r=1, p=1 (same master key)."""
    (key_path,) = (repository / "keys").iterdir()
    key = json.loads(key_path.read_text())
    enc, mac_k, mac_r = _user_key(password, base64.b64decode(key["salt"]), key["N"], key["r"], key["p"])
    blob = base64.b64decode(key["data"])
    nonce, ciphertext, tag = blob[:16], blob[16:-16], blob[-16:]
    assert _poly1305(ciphertext, mac_r, _aes_block(mac_k, nonce)) == tag, "cannot open the template key"
    master = _aes_ctr(enc, nonce, ciphertext)
    salt, nonce = os.urandom(64), os.urandom(16)
    enc, mac_k, mac_r = _user_key(password, salt, 16, 1, 1)
    ciphertext = _aes_ctr(enc, nonce, master)
    data = nonce + ciphertext + _poly1305(ciphertext, mac_r, _aes_block(mac_k, nonce))
    key.update(N=16, r=1, p=1, salt=base64.b64encode(salt).decode(), data=base64.b64encode(data).decode())
    content = json.dumps(key).encode()
    key_path.unlink()
    (repository / "keys" / hashlib.sha256(content).hexdigest()).write_bytes(content)


def make_template_repository(where: Path) -> Path:
    """One `restic init` for the session; tests copy the result."""
    password_file = where / "password"
    password_file.write_text(PASSWORD + "\n")
    repository = where / "repo"
    subprocess.run(
        [restic_binary(), "init", "--repo", str(repository), "--password-file", str(password_file)],
        check=True,
        capture_output=True,
        env=clean_env(),
    )
    weaken_kdf(repository, PASSWORD)
    return repository


def clean_env() -> dict[str, str]:
    """The caller's RESTIC_* variables must not leak into a test."""
    return {key: value for key, value in os.environ.items() if not key.startswith("RESTIC_")}


# ----------------------------------------------------------------------------------------- the device


@dataclasses.dataclass
class Result:
    """One rvm-backup invocation."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines of `run` (every stdout line must be one)."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def event(self, name: str) -> dict[str, Any]:
        (found,) = [event for event in self.events if event["event"] == name]
        return found

    @property
    def document(self) -> Any:
        """The single JSON document of restore / snapshots / status."""
        (line,) = self.stdout.splitlines()
        return json.loads(line)


class Device:
    """A device's file tree under tmp_path, with config, live database and repository."""

    def __init__(self, root: Path, driver: Path) -> None:
        self.root = root
        self.driver = driver
        self.etc = root / "etc" / "rvm-edge"
        self.data = root / "var" / "lib" / "rvm-edge"
        self.database = self.data / "rvm-edge.sqlite3"
        self.state_dir = root / "var" / "lib" / "rvm-backup"
        self.copy = self.state_dir / "staging" / "rvm-edge.sqlite3"
        self.textfile_dir = root / "var" / "lib" / "prometheus" / "node-exporter"
        self.repository = root / "srv" / "restic" / HOST
        self.password_file = root / "etc" / "rvm-backup" / "password"
        self.config_path = root / "etc" / "rvm-backup" / "config.json"
        self.secrets = [PASSWORD]
        self.outputs: list[str] = []
        for directory in (self.etc, self.data, self.password_file.parent):
            directory.mkdir(parents=True)
        (self.etc / "config.yml").write_text("station: test\n")
        (self.etc / "credentials").write_text("api-token: do-not-back-up\n")
        self.set_password(PASSWORD)
        self.write_config()

    def set_password(self, password: str) -> None:
        """The password file as provisioning writes it (0600, trailing newline)."""
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        if password not in self.secrets:
            self.secrets.append(password)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The config the backup role would template for this device."""
        config: dict[str, Any] = {
            "repository": str(self.repository),
            "password_file": str(self.password_file),
            "host": HOST,
            "tags": [TAG],
            "sqlite": [{"source": str(self.database), "copy": str(self.copy)}],
            "paths": [str(self.etc), str(self.data)],
            "excludes": [
                str(self.etc / "credentials"),
                f"{self.data}/*.sqlite3",
                f"{self.data}/*.sqlite3-wal",
                f"{self.data}/*.sqlite3-shm",
                str(self.data / "snapshots"),
            ],
            "retention": {
                "keep_last": 3,
                "keep_hourly": 24,
                "keep_daily": 7,
                "keep_weekly": 4,
                "keep_monthly": 6,
            },
            "check_subsets": 7,
            "textfile_dir": str(self.textfile_dir),
            "state_dir": str(self.state_dir),
            "restic": restic_binary(),
            "sftp_command": "",
        }
        config.update(overrides)
        return config

    def write_config(self, **overrides: Any) -> None:
        self.config_path.write_text(json.dumps(self.config(**overrides), indent=2))

    def use_repository(self, template: Path) -> None:
        """An initialised repository (copy of the session's template) instead of none."""
        shutil.copytree(template, self.repository)

    def rvm_backup(self, *args: str, config: Path | None = None) -> Result:
        """The driver as systemd/Ansible run it; asserts no secret ever shows up in its output."""
        argv = [DEVICE_PYTHON, str(self.driver), *args, "--config", str(config or self.config_path)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=120, check=False)
        self.outputs += [proc.stdout, proc.stderr]
        for secret in self.secrets:
            assert secret not in proc.stdout + proc.stderr, f"a password leaked into the output of {args}"
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """The driver in the background (a restore that has to wait), stderr read line by line."""
        argv = [DEVICE_PYTHON, str(self.driver), *args, "--config", str(self.config_path)]
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
        )

    def run(self) -> Result:
        """One timer-triggered backup run."""
        return self.rvm_backup("run")

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        """restic itself, as an operator would inspect the repository (with the right password)."""
        env = clean_env()
        env.update(
            RESTIC_REPOSITORY=str(self.repository),
            RESTIC_PASSWORD_FILE=str(self.password_file),
            RESTIC_CACHE_DIR=str(self.root / "inspect-cache"),
        )
        return subprocess.run([restic_binary(), *args], capture_output=True, text=True, env=env, check=True)

    def snapshot_paths(self, snapshot: str = "latest") -> set[str]:
        """Every path stored in a snapshot (restic ls --json)."""
        listed = self.restic("ls", "--json", snapshot).stdout.splitlines()
        nodes = [json.loads(line) for line in listed]
        return {node["path"] for node in nodes if node.get("struct_type") == "node"}

    def metrics(self) -> dict[str, float]:
        """The .prom file node-exporter would read, as name -> value (asserting the host label)."""
        path = self.textfile_dir / "rvm_backup.prom"
        values: dict[str, float] = {}
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                continue
            name_labels, value = line.rsplit(" ", 1)
            name, labels = name_labels.split("{", 1)
            assert labels == f'host="{HOST}"}}', line
            values[name] = float(value)
        return values

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.state_dir / "state.json").read_text())
        return state

    def create_database(self, rows: int) -> None:
        """A live database as rvm-edge keeps it: WAL mode, a schema version, a deposits table."""
        conn = sqlite3.connect(self.database)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE deposits (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            conn.execute(
                "CREATE TABLE totals (one INTEGER PRIMARY KEY CHECK (one = 1), deposits INTEGER NOT NULL)"
            )
            conn.execute("INSERT INTO totals VALUES (1, 0)")
            conn.execute(f"PRAGMA user_version={USER_VERSION}")
            conn.commit()
        finally:
            conn.close()
        insert_deposits(self.database, rows)


def insert_deposits(database: Path, count: int) -> None:
    """`count` more deposits, each its own transaction that also bumps the total (as the service does)."""
    conn = sqlite3.connect(database)
    try:
        for _ in range(count):
            deposit(conn)
    finally:
        conn.close()


def deposit(conn: sqlite3.Connection) -> None:
    """One deposit: a row and the running total in one transaction, so a torn copy would disagree."""
    with conn:
        conn.execute("INSERT INTO deposits (payload) VALUES (randomblob(300))")
        conn.execute("UPDATE totals SET deposits = deposits + 1")


def read_deposits(database: Path) -> tuple[list[int], int]:
    """(deposit ids in order, the recorded total) of a database, opened read-only."""
    conn = sqlite3.connect(database.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM deposits ORDER BY id")]
        (total,) = conn.execute("SELECT deposits FROM totals").fetchone()
        return ids, total
    finally:
        conn.close()


def integrity(database: Path) -> str:
    conn = sqlite3.connect(database.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@contextlib.contextmanager
def writer(database: Path, warm_up: int) -> Iterator[dict[str, int]]:
    """A thread depositing as fast as it can until the block ends (WAL mode, its own connection, as the
    service would). The block starts once `warm_up` deposits are in: the backup meets a writer mid-stream.
    Yields counters: committed before the block's body and in total."""
    stop = threading.Event()
    warmed = threading.Event()
    counts = {"before": 0, "total": 0}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            conn = sqlite3.connect(database, timeout=30)
            try:
                while not stop.is_set():
                    deposit(conn)
                    counts["total"] += 1
                    if counts["total"] == warm_up:
                        warmed.set()
            finally:
                conn.close()
        except BaseException as exc:  # reported in the test's thread
            failure.append(exc)
            warmed.set()

    thread = threading.Thread(target=work, name="deposit-writer")
    thread.start()
    try:
        warmed.wait()
        counts["before"] = counts["total"]
        yield counts
    finally:
        stop.set()
        thread.join()
    assert not failure, f"the writer failed: {failure[0]!r}"
