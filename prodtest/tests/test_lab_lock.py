"""The suite holds the lab lock itself, for its whole run: another lab job waits until it lets go."""

from __future__ import annotations

import fcntl
from pathlib import Path

from prodtest.__main__ import hold_lab_lock


def _free(path: Path) -> bool:
    with path.open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_the_lock_is_held_until_the_suite_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "rvm-lab.lock"
    held = hold_lab_lock(str(path))
    assert held is not None
    assert not _free(path), "another lab job could take the lab while the suite runs"
    held.close()
    assert _free(path)


def test_an_empty_path_means_the_caller_holds_it() -> None:
    assert hold_lab_lock("") is None
