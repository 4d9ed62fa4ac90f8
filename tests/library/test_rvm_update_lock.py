"""rvm_update_lock: two updates never run on one device at once, and a dead run never blocks it forever."""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "library"))
import rvm_update_lock


def run(args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    out = io.StringIO()
    with (
        patch_module_args(dict(args, _ansible_check_mode=check)),
        redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        rvm_update_lock.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    result["warning_msgs"] = [
        w["event"]["msg"] if isinstance(w, dict) else str(w) for w in result.get("warnings", [])
    ]
    return result


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "run" / "lock" / "rvm-edge-update.lock"


def hold(lock: Path, token: str, holder: str = "bob@control-2: deploy 1.9.0", **extra: Any) -> dict[str, Any]:
    return run({"path": str(lock), "token": token, "holder": holder, **extra})


def test_a_free_device_is_locked_for_the_run_and_released_after(lock: Path) -> None:
    taken = hold(lock, "run-a", "alice@control-1: deploy 2.0.0")
    assert not taken.get("failed") and taken["changed"] and taken["msg"] == "lock taken"
    on_disk = json.loads(lock.read_text())
    assert on_disk["token"] == "run-a" and on_disk["holder"] == "alice@control-1: deploy 2.0.0"

    again = hold(lock, "run-a")  # the same run (a rollback inside a deploy) takes it again
    assert not again.get("failed") and not again["changed"]

    released = run({"path": str(lock), "token": "run-a", "state": "released"})
    assert released["changed"] and not lock.exists()
    assert not run({"path": str(lock), "token": "run-a", "state": "released"})["changed"]


def test_a_second_run_is_refused_and_told_who_holds_the_device(lock: Path) -> None:
    hold(lock, "run-a", "alice@control-1: deploy 2.0.0")
    refused = hold(lock, "run-b")
    assert refused["failed"]
    assert "another update holds this device: alice@control-1: deploy 2.0.0, since " in refused["msg"]
    assert "-e rvm_edge_lock_break=true" in refused["msg"] and str(lock) in refused["msg"]
    assert json.loads(lock.read_text())["token"] == "run-a"  # untouched


def test_a_dead_runs_lock_is_taken_over_once_stale(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hold(lock, "dead-run", "bob@control-2: deploy 1.9.0")
    later = rvm_update_lock.time.time() + 1801
    monkeypatch.setattr(rvm_update_lock.time, "time", lambda: later)
    taken = hold(lock, "run-b", "alice@control-1: rollback", stale_after_s=1800)
    assert not taken.get("failed") and taken["changed"]
    assert taken["previous"]["holder"] == "bob@control-2: deploy 1.9.0"
    assert any(
        "taken over from bob@control-2: deploy 1.9.0 (stale: 1801 s old)" in w for w in taken["warning_msgs"]
    )
    assert json.loads(lock.read_text())["token"] == "run-b"


def test_age_alone_never_frees_the_lock_when_stale_after_is_zero(
    lock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold(lock, "run-a")
    later = rvm_update_lock.time.time() + 10 * 86400
    monkeypatch.setattr(rvm_update_lock.time, "time", lambda: later)
    assert hold(lock, "run-b", stale_after_s=0)["failed"]


def test_break_lock_takes_it_at_once(lock: Path) -> None:
    hold(lock, "run-a")
    taken = hold(lock, "run-b", "carol@laptop: deploy 2.0.0", break_lock=True)
    assert not taken.get("failed") and any("(break_lock)" in w for w in taken["warning_msgs"])
    assert json.loads(lock.read_text())["holder"] == "carol@laptop: deploy 2.0.0"


def test_a_file_that_is_not_a_lock_still_holds_the_device(lock: Path) -> None:
    lock.parent.mkdir(parents=True)
    lock.write_text("<html>oops")
    refused = hold(lock, "run-a")
    assert refused["failed"] and "an unreadable lock file (10 bytes), since " in refused["msg"]
    assert not hold(lock, "run-a", break_lock=True).get("failed")


def test_check_mode_changes_nothing_but_still_meets_a_held_lock(lock: Path) -> None:
    dry = run({"path": str(lock), "token": "run-a"}, check=True)
    assert dry["changed"] and not lock.exists() and not lock.parent.exists()
    hold(lock, "run-a")
    assert run({"path": str(lock), "token": "run-b"}, check=True)["failed"]
    broken = run({"path": str(lock), "token": "run-b", "break_lock": True}, check=True)
    assert broken["changed"] and json.loads(lock.read_text())["token"] == "run-a"
    run({"path": str(lock), "token": "run-a", "state": "released"}, check=True)
    assert lock.exists()


def test_releasing_leaves_another_runs_lock_alone(lock: Path) -> None:
    hold(lock, "run-b", "carol@laptop: deploy 2.0.0")
    left = run({"path": str(lock), "token": "run-a", "state": "released"})
    assert not left["changed"] and lock.exists()
    assert any("held by carol@laptop: deploy 2.0.0, not by this run" in w for w in left["warning_msgs"])


def test_bad_arguments_are_named(lock: Path) -> None:
    assert "token must not be empty" in run({"path": str(lock), "token": " "})["msg"]
    assert "stale_after_s must be 0 (never) or more, got -5" in hold(lock, "run-a", stale_after_s=-5)["msg"]


def test_of_many_runs_starting_together_exactly_one_gets_the_lock(lock: Path) -> None:
    lock.parent.mkdir(parents=True)
    start = threading.Barrier(8)

    def contend(i: int) -> str:
        start.wait()
        params = {
            "path": str(lock),
            "token": f"run-{i}",
            "holder": f"run {i}",
            "stale_after_s": 1800,
            "break_lock": False,
        }
        try:
            return rvm_update_lock.take(params, False, rvm_update_lock.time.time())["msg"]
        except rvm_update_lock.LockHeld:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(contend, range(8)))
    assert outcomes.count("lock taken") == 1 and outcomes.count("refused") == 7
    assert json.loads(lock.read_text())["token"] == f"run-{outcomes.index('lock taken')}"
    assert [p.name for p in lock.parent.iterdir()] == [lock.name]  # no temp files left
    assert os.stat(lock).st_mode & 0o777 == 0o644


def test_documentation_matches_the_argument_spec_and_examples() -> None:
    import yaml

    doc = yaml.safe_load(rvm_update_lock.DOCUMENTATION)
    assert doc["module"] == "rvm_update_lock" and set(doc["options"]) == set(rvm_update_lock.ARGUMENT_SPEC)
    for name, spec in rvm_update_lock.ARGUMENT_SPEC.items():
        documented = doc["options"][name]
        assert documented["type"] == spec["type"] and documented.get("default") == spec.get("default"), name
        assert documented.get("choices") == spec.get("choices") and documented["description"], name
        assert documented.get("required", False) == spec.get("required", False), name
    for task in yaml.safe_load(rvm_update_lock.EXAMPLES):
        assert set(task["rvm_update_lock"]) <= set(doc["options"])
    assert yaml.safe_load(rvm_update_lock.RETURN)["msg"]["returned"] == "always"
