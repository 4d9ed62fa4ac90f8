"""The restic driver: runs restic with the config's repository and password FILE, interrupts it at
timeout_s, and turns its failures (wrong password, no repository, a lock: live or stale) into messages an
operator can act on. Also the pure translations between the config and restic's command line and output
(retention options, host/tag filters, restic's timestamps and durations), unit-tested on their own."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rvm_backup.config import KEEP_KEYS, Config
from rvm_backup.errors import BackupError
from rvm_backup.journal import Journal, redact_url

STDERR_TAIL_LINES = 12
INTERRUPT_GRACE_S = 30
# restic's own rule (lock.go): a lock older than this, or one of this host whose process is gone, is stale.
STALE_LOCK_AGE_S = 30 * 60
NO_REPOSITORY_TEXT = "Is there a repository at the following location?"
WRONG_PASSWORD_TEXT = "wrong password or no key found"
LOCKED_TEXT = "repository is already locked"
# A connection the sftp server dropped before the session began (sshd's MaxStartups throttling, a
# ZeroTier path still forming): nothing was written, so the command is tried again, a bounded number of
# times with jittered, growing pauses, so a batch of devices does not come back in lockstep.
SESSION_DROPPED_TEXTS = ("unable to start the sftp session", "Connection closed by")
SESSION_ATTEMPTS = 4
SESSION_BACKOFF_S = 2.0
# Environment variables that would hand restic a password or repository other than the config's.
FOREIGN_RESTIC_ENV = ("RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY_FILE")


@dataclasses.dataclass(frozen=True)
class ResticResult:
    """What one restic command returned."""

    returncode: int
    stdout: str
    stderr: str


def session_dropped(stderr: str) -> bool:
    """restic failed because the sftp session never started (safe to try again)."""
    return any(text in stderr for text in SESSION_DROPPED_TEXTS)


def keep_options(retention: dict[str, int]) -> list[str]:
    """--keep-last 3 --keep-daily 7 ... for the non-zero keeps (0 means "no rule", not "keep none")."""
    return [
        arg
        for key in KEEP_KEYS
        if retention[key] > 0
        for arg in (f"--{key.replace('_', '-')}", str(retention[key]))
    ]


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last lines of restic's stderr: where its reason is, without pages of progress."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go duration as restic prints lock ages ("1h2m3.5s", "850ms")."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * units[unit] for number, unit in parts)


def parse_restic_time(text: str) -> float:
    """Unix time of restic's RFC 3339 timestamps (nanoseconds, Z), which fromisoformat on 3.10 rejects."""
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return 0.0
    base, fraction, zone = match.groups()
    parsed = datetime.datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return parsed.timestamp() + (float("0." + fraction) if fraction else 0.0)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """restic --json prints one JSON message per line (status, summary, ...)."""
    messages = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict):
                messages.append(message)
    return messages


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (what restic itself asks to call a lock stale)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def explain_lock(stderr: str) -> str:
    """Say who holds the lock and, only when the lock is stale by restic's rule, that unlock is safe:
    removing a live process's lock lets a prune delete data a running backup still needs."""
    holder = re.search(r"locked (?:exclusively )?by PID (\d+) on (\S+) by", stderr)
    created = re.search(r"lock was created at (.+?) \((\S+) ago\)", stderr)
    if holder is None:
        return (
            "the restic repository is locked by another restic process; wait for it to finish and run again"
        )
    pid, lock_host = int(holder.group(1)), holder.group(2)
    age = parse_go_duration(created.group(2)) if created else None
    who = f"PID {pid} on {lock_host}" + (f", lock created {created.group(1)}" if created else "")
    dead_here = lock_host == socket.gethostname() and not pid_alive(pid)
    if dead_here or (age is not None and age > STALE_LOCK_AGE_S):
        why = "that process no longer runs" if dead_here else "it is older than 30 minutes"
        return (
            f"the restic repository is locked by a stale lock ({who}; {why}): remove it with `restic unlock` "
            "(with RESTIC_REPOSITORY and RESTIC_PASSWORD_FILE as in the config) and run again"
        )
    return (
        f"the restic repository is locked by another restic process that is still running ({who}); "
        "wait for it to finish and run again (the lock is not stale: leave it alone)"
    )


class Restic:
    """Runs restic with the config's repository and password file, and turns failures into messages."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def env(self) -> dict[str, str]:
        """The password goes by file only: never argv (visible in ps) nor RESTIC_PASSWORD (in /proc)."""
        env = {key: value for key, value in os.environ.items() if key not in FOREIGN_RESTIC_ENV}
        env.update(
            RESTIC_REPOSITORY=self.config.repository,
            RESTIC_PASSWORD_FILE=self.config.password_file,
            RESTIC_CACHE_DIR=str(Path(self.config.state_dir) / "cache"),
        )
        return env

    def argv(self, args: Sequence[str]) -> list[str]:
        """restic, its global options, the command."""
        options = ["-o", f"sftp.command={self.config.sftp_command}"] if self.config.sftp_command else []
        return [self.config.restic, *options, *args]

    def call(self, args: Sequence[str]) -> ResticResult:
        """Run restic; a session the server dropped before it began is tried again (SESSION_ATTEMPTS in
        all, jittered pauses from SESSION_BACKOFF_S); the last result otherwise."""
        result = self.call_once(args)
        for attempt in range(1, SESSION_ATTEMPTS):
            if result.returncode == 0 or not session_dropped(result.stderr):
                break
            pause = SESSION_BACKOFF_S * attempt * (0.5 + random.random())  # jitter, not secrecy
            print(f"rvm-backup: restic {args[0]}: the sftp session was dropped before it began; "
                  f"trying again in {pause:.1f} s ({attempt + 1} of {SESSION_ATTEMPTS})", file=sys.stderr, flush=True)  # fmt: skip
            time.sleep(pause)
            result = self.call_once(args)
        return result

    def call_once(self, args: Sequence[str]) -> ResticResult:
        """Run restic, capture its output (never streamed raw), and interrupt it at timeout_s."""
        try:
            proc = subprocess.Popen(
                self.argv(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=self.env(),
            )
        except OSError as exc:
            raise BackupError(f"cannot run restic ({self.config.restic}): {exc.strerror or exc}") from None
        try:
            stdout, stderr = proc.communicate(timeout=self.config.timeout_s)
        except subprocess.TimeoutExpired:
            self.interrupt(proc)
            raise BackupError(
                f"restic {args[0]} did not finish within {self.config.timeout_s} s "
                f"(timeout_s in {self.config.path}) and was interrupted"
            ) from None
        return ResticResult(proc.returncode, stdout, stderr)

    @staticmethod
    def interrupt(proc: subprocess.Popen[str]) -> None:
        """SIGINT first: restic then removes its repository lock; SIGKILL (a stale lock) only if it hangs."""
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()

    def run(self, args: Sequence[str]) -> ResticResult:
        """Run restic and raise a BackupError that explains a failure."""
        result = self.call(args)
        if result.returncode != 0:
            raise BackupError(self.explain(args[0], result))
        return result

    def explain(self, command: str, result: ResticResult) -> str:
        """Turn restic's stderr into a message an operator can act on."""
        stderr = result.stderr
        if WRONG_PASSWORD_TEXT in stderr:
            return (
                f"restic cannot open the repository with the password in {self.config.password_file} "
                f"(restic: {WRONG_PASSWORD_TEXT}); that file does not hold this repository's password"
            )
        if LOCKED_TEXT in stderr:
            return explain_lock(stderr)
        if NO_REPOSITORY_TEXT in stderr:
            return (
                f"there is no restic repository at {redact_url(self.config.repository)} yet; "
                "the first `rvm-backup run` initialises it"
            )
        return f"restic {command} failed (exit {result.returncode}): {tail(stderr) or '(no output)'}"

    def filters(self) -> list[str]:
        """This device's snapshots only: the repository may be shared, and tags a,b means both."""
        return ["--host", self.config.host, "--tag", ",".join(self.config.tags)]

    def snapshots(self) -> list[dict[str, Any]]:
        """This host's snapshots, oldest first."""
        result = self.run(["snapshots", "--json", *self.filters()])
        try:
            listed = json.loads(result.stdout or "[]") or []
        except ValueError:
            raise BackupError(f"restic snapshots printed no JSON: {tail(result.stdout)}") from None
        return sorted(listed, key=lambda snap: parse_restic_time(snap.get("time", "")))


def password_file_problem(config: Config) -> str | None:
    """Catch a missing password file before restic, with the path (restic's text would not help much)."""
    path = Path(config.password_file)
    if not path.is_file():
        return f"the password file {path} does not exist (password_file in {config.path})"
    if not os.access(path, os.R_OK):
        return f"the password file {path} is not readable by this user (password_file in {config.path})"
    return None


def open_repository(restic: Restic, journal: Journal | None) -> bool:
    """Make sure the repository exists and the password opens it. Only `run` passes a journal: it may
    initialise a missing repository; a wrong password is never a reason to create one. True if initialised."""
    problem = password_file_problem(restic.config)
    if problem:
        raise BackupError(problem)
    result = restic.call(["cat", "config"])
    if result.returncode == 0:
        return False
    if journal is None or result.returncode != 1 or NO_REPOSITORY_TEXT not in result.stderr:
        raise BackupError(restic.explain("cat config", result))
    started = time.monotonic()
    restic.run(["init"])
    journal.event("init", time.monotonic() - started, repository=redact_url(restic.config.repository))
    return True
