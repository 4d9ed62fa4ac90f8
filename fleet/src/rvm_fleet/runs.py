"""Run records: each run is ansible-runner's artifacts/<ident>/ plus rvm-fleet.json beside them.

The ident is ``YYYYmmddTHHMMSSZ-<command>`` so that a plain sort is the order the runs started in.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD = "rvm-fleet.json"


@dataclass
class RunRecord:
    ident: str
    command: str
    argv: list[str]
    playbook: str
    limit: str | None
    who: str
    started: float
    ended: float | None = None
    status: str = "running"  # runner's: successful, failed, canceled, timeout; or running
    exit_code: int | None = None
    failed_hosts: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        return None if self.ended is None else round(self.ended - self.started, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


def new_ident(command: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{command}"


def unique_ident(artifacts: Path, command: str) -> str:
    ident = new_ident(command)
    n = 1
    while (artifacts / ident).exists():
        n += 1
        ident = f"{new_ident(command)}-{n}"
    return ident


def who() -> str:
    try:
        user = getpass.getuser()
    except OSError:
        user = "?"
    return f"{user}@{socket.gethostname()}"


def save(artifacts: Path, record: RunRecord) -> None:
    path = artifacts / record.ident / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.as_dict(), indent=1) + "\n")
    tmp.replace(path)


def load(artifacts: Path, ident: str) -> RunRecord | None:
    path = artifacts / ident / RECORD
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data.pop("duration_s", None)
    record = RunRecord(**data)
    runner_status = artifacts / ident / "status"
    if record.status == "running" and runner_status.is_file():
        # rvm-fleet died (kill -9) after runner finished or while it ran: say what runner recorded
        record.status = f"{runner_status.read_text().strip()}?"
    return record


def all_runs(artifacts: Path) -> list[RunRecord]:
    if not artifacts.is_dir():
        return []
    out = [load(artifacts, d.name) for d in sorted(artifacts.iterdir()) if d.is_dir()]
    return [r for r in out if r is not None]
