"""The driver waits, bounded, for restic's leftover processes in its cgroup before it exits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from rvm_backup.strays import own_cgroup_procs, wait_for_strays


def cgroup_tree(root: Path, procs: dict[str, str], self_cgroup: str) -> Path:
    """A fake /sys/fs/cgroup under ``root`` (path -> cgroup.procs) and a /proc/self/cgroup."""
    for path, pids in procs.items():
        (root / path).mkdir(parents=True)
        (root / path / "cgroup.procs").write_text(pids)
    (root / "self-cgroup").write_text(self_cgroup)
    return root / "self-cgroup"


def test_the_unified_cgroup_is_found_and_absent_outside_cgroup_v2(tmp_path: Path) -> None:
    me = cgroup_tree(
        tmp_path, {"system.slice/rvm-backup.service": "42\n"}, "0::/system.slice/rvm-backup.service\n"
    )
    assert (
        own_cgroup_procs(me, tmp_path, exec_pid="7", me=7)
        == tmp_path / "system.slice/rvm-backup.service/cgroup.procs"
    )
    me.write_text("12:pids:/system.slice/rvm-backup.service\n")  # no hierarchy systemd tracks units in
    assert own_cgroup_procs(me, tmp_path, exec_pid="7", me=7) is None


def test_a_hybrid_host_uses_the_name_systemd_hierarchy(tmp_path: Path) -> None:
    """The lab's podman containers: the 0:: line names the container, name=systemd the unit."""
    unit = "libpod_parent/libpod-1/system.slice/rvm-backup.service"
    me = cgroup_tree(
        tmp_path,
        {f"systemd/{unit}": "7\n", "libpod_parent/libpod-1": "1\n7\n"},
        f"9:name=systemd:/{unit}\n8:pids:/libpod_parent/libpod-1\n0::/libpod_parent/libpod-1\n",
    )
    assert own_cgroup_procs(me, tmp_path, exec_pid="7", me=7) == tmp_path / "systemd" / unit / "cgroup.procs"
    assert own_cgroup_procs(tmp_path / "missing", tmp_path, exec_pid="7", me=7) is None


def test_only_a_units_main_process_waits(tmp_path: Path) -> None:
    """Run by hand or by Ansible's validate: a login session's cgroup, never empty: no wait."""
    me = cgroup_tree(tmp_path, {"user.slice/session-3.scope": "7\n8\n"}, "0::/user.slice/session-3.scope\n")
    assert own_cgroup_procs(me, tmp_path, exec_pid="", me=7) is None  # no SYSTEMD_EXEC_PID
    assert own_cgroup_procs(me, tmp_path, exec_pid="5", me=7) is None  # a child of the unit's process
    assert (
        own_cgroup_procs(me, tmp_path, exec_pid="7", me=7)
        == tmp_path / "user.slice/session-3.scope/cgroup.procs"
    )


def test_returns_once_only_this_process_is_left(tmp_path: Path) -> None:
    """A real child that exits after ~0.3 s: the wait ends after it, with nothing left."""
    procs = tmp_path / "cgroup.procs"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    procs.write_text(f"{os.getpid()}\n{child.pid}\n")

    def reap() -> None:
        child.wait()
        procs.write_text(f"{os.getpid()}\n")  # what the kernel does when the child exits

    threading.Thread(target=reap).start()
    assert wait_for_strays(procs, timeout_s=10) == []
    assert child.returncode == 0


def test_gives_up_after_the_timeout_naming_what_is_left(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("1\n999999\n")
    assert wait_for_strays(procs, timeout_s=0.2, interval_s=0.05, me=1) == [999999]


def test_nothing_to_wait_for_without_a_cgroup_file() -> None:
    assert wait_for_strays(None) == []
