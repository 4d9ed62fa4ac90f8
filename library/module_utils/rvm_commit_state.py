"""Where a device keeps its pending commit (issue 16): the files, read and written safely.

Why a module of its own: the rvm_commit Ansible module (arm, commit, disarm) and the device-side
guard (rvm-edge-commit-guard, which rolls back) read and write the same two records and must never
both act on them at once. Every change happens under one flock on the state directory, and each
file is replaced in one rename, so a reboot in the middle leaves the old or the new record, never a
part. The decisions themselves are in rvm_commit_core.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ansible.module_utils.rvm_commit_core import Clock, Outcome, Pending, PendingError

PENDING = "pending.json"
LAST = "last.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def clock_now(boot_id_path: str = BOOT_ID) -> Clock:
    """The wall clock, and this boot's id with its boot clock; without them (not Linux, /proc
    unreadable) the wall clock alone, as records were decided before the boot clock."""
    wall = time.time()
    try:
        with open(boot_id_path, encoding="ascii") as handle:
            boot_id = handle.read().strip()
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, AttributeError):
        return Clock(wall)
    return Clock(wall, boot_id, since_boot) if boot_id else Clock(wall)


class StateBusy(OSError):
    """Another actor (the guard rolling back, another run) held the state lock for too long."""


class CommitState:
    """The pending commit and the outcome of the last one, under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    @property
    def pending_path(self) -> Path:
        return self.dir / PENDING

    @contextmanager
    def locked(self, wait_s: float = 120.0) -> Iterator[None]:
        """Hold the directory's lock; a guard rolling back holds it for the whole rollback, so a
        commit arriving meanwhile waits and then sees the outcome instead of racing it."""
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            give_up = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= give_up:
                        raise StateBusy(
                            f"{self.dir} stayed locked for {wait_s:.0f} s (a rollback running?)"
                        ) from None
                    time.sleep(0.2)
            yield
        finally:
            os.close(fd)

    def pending(self) -> Pending | None:
        text = self._read(PENDING)
        if text is None:
            return None
        try:
            return Pending.from_json(text)
        except PendingError as exc:
            raise PendingError(f"{self.dir / PENDING}: {exc}") from None

    def last(self) -> Outcome | None:
        """The last outcome; a damaged file counts as none (it only words a refusal)."""
        text = self._read(LAST)
        if text is None:
            return None
        try:
            raw = json.loads(text)
            return Outcome(str(raw["release"]), raw["result"], float(raw["at"]), str(raw.get("reason", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def write_pending(self, pending: Pending) -> None:
        self._replace(PENDING, pending.to_json() + "\n")

    def write_last(self, outcome: Outcome) -> None:
        self._replace(LAST, json.dumps(asdict(outcome), sort_keys=True) + "\n")

    def clear_pending(self) -> None:
        try:
            os.unlink(self.dir / PENDING)
        except FileNotFoundError:
            return
        self._fsync_dir()

    def _read(self, name: str) -> str | None:
        try:
            return (self.dir / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _replace(self, name: str, text: str) -> None:
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.dir / name)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def public(pending: Pending | None) -> dict[str, object] | None:
    """A pending record as task output: without the run token (it commits the release)."""
    if pending is None:
        return None
    out = asdict(pending)
    out.pop("token")
    return out
