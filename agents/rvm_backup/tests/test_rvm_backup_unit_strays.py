"""The driver waits, bounded, for restic's leftover processes in its cgroup before it exits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from rvm_backup.strays import own_cgroup_procs, wait_for_strays


def test_the_unified_cgroup_is_found_and_absent_outside_cgroup_v2(tmp_path: Path) -> None:
    unit = tmp_path / "system.slice" / "rvm-backup.service"
    unit.mkdir(parents=True)
    (unit / "cgroup.procs").write_text("42\n")
    me = tmp_path / "cgroup"
    me.write_text("0::/system.slice/rvm-backup.service\n")
    assert own_cgroup_procs(me, tmp_path) == unit / "cgroup.procs"
    me.write_text("12:pids:/system.slice/rvm-backup.service\n")  # cgroup v1 only
    assert own_cgroup_procs(me, tmp_path) is None
    assert own_cgroup_procs(tmp_path / "missing", tmp_path) is None


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
