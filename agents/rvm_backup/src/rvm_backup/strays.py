"""Wait, bounded, until this process is the last one in its cgroup before it exits.

Why: restic leaves its `ssh` (the sftp transport) exiting for a moment after restic itself has
returned. If the driver, the unit's main process, exits first, systemd finds the oneshot's cgroup
not empty, sends SIGTERM to what is left and waits for the "cgroup empty" notification. Inside a
container that notification can be lost (seen on the lab fleet: the backup finished "ok", then
"State 'stop-sigterm' timed out" 90 s later and the unit failed). With the strays gone first, systemd
sees an empty cgroup when the main process exits and the unit ends at once, container or not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroup_procs(
    proc_self_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT
) -> Path | None:
    """The cgroup.procs file of this process's unified (v2) cgroup; None outside cgroup v2."""
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            procs = root / line[3:].lstrip("/") / "cgroup.procs"
            return procs if procs.is_file() else None
    return None


def wait_for_strays(
    procs: Path | None, timeout_s: float = 10.0, interval_s: float = 0.05, me: int | None = None
) -> list[int]:
    """Poll ``procs`` until it lists no process but ``me``; returns the PIDs still there at the
    timeout (the caller exits anyway: systemd then cleans up as before)."""
    if procs is None:
        return []
    me = os.getpid() if me is None else me
    deadline = time.monotonic() + timeout_s
    others: list[int] = []
    for _ in range(int(timeout_s / interval_s) + 2):
        try:
            others = [int(p) for p in procs.read_text().split() if int(p) != me]
        except (OSError, ValueError):
            return []
        if not others or time.monotonic() >= deadline:
            return others
        time.sleep(interval_s)
    return others
