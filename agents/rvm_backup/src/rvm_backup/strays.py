"""Wait, bounded, until this process is the last one in its cgroup before it exits.

Why: restic leaves its `ssh` (the sftp transport) exiting for a moment after restic itself has
returned. If the driver, the unit's main process, exits first, systemd finds the oneshot's cgroup
not empty, sends SIGTERM to what is left and waits for the "cgroup empty" notification. Inside a
container that notification can be lost (seen on the lab fleet: the backup finished "ok", then
"State 'stop-sigterm' timed out" 90 s later and the unit failed). With the strays gone first, systemd
sees an empty cgroup when the main process exits and the unit ends at once, container or not.

Only as a unit's main process (systemd sets SYSTEMD_EXEC_PID to it): run by hand or by Ansible (the
config template's `validate:`, restore.yml), the cgroup is a login session's, whose shell, sshd and
Ansible module never leave, and the driver would wait out the whole bound for nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_cgroup_procs(
    proc_self_cgroup: Path = Path("/proc/self/cgroup"),
    root: Path = CGROUP_ROOT,
    exec_pid: str | None = None,
    me: int | None = None,
) -> Path | None:
    """The cgroup.procs file of the cgroup systemd tracks this unit in, when this process is its
    unit's main process; None otherwise. On a legacy or hybrid host (the lab's podman containers)
    systemd tracks units in the v1 ``name=systemd`` hierarchy, whose ``0::`` line names only the
    container; on a unified host (JetPack 6) in the v2 one."""
    exec_pid = os.environ.get("SYSTEMD_EXEC_PID") if exec_pid is None else exec_pid
    if exec_pid != str(os.getpid() if me is None else me):
        return None
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    tracked: dict[str, Path] = {}
    for line in lines:
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        if "name=systemd" in controllers.split(","):
            tracked["v1"] = root / "systemd" / path.lstrip("/") / "cgroup.procs"
        elif hierarchy == "0" and not controllers:
            tracked["v2"] = root / path.lstrip("/") / "cgroup.procs"
    for kind in ("v1", "v2"):
        if kind in tracked and tracked[kind].is_file():
            return tracked[kind]
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
