"""The rvm_commit module (issue 16): the play arms a pending commit at the switch, commits it after the
health gate, disarms it when it goes back itself; a late commit after the device rolled back is
refused with the reason; check mode writes nothing; bad input is named."""

from __future__ import annotations

import io
import json
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import rvm_commit
import yaml
from ansible.module_utils.rvm_commit_core import Outcome
from ansible.module_utils.rvm_commit_state import CommitState, clock_now
from ansible.module_utils.testing import patch_module_args

ARM = {"state": "armed", "release": "2.0.0", "previous": "1.0.0", "timeout_s": 90, "token": "run-a"}


def run(args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    out = io.StringIO()
    with (
        patch_module_args(dict(args, _ansible_check_mode=check)),
        redirect_stdout(out),
        pytest.raises(SystemExit),
    ):
        rvm_commit.main()
    return json.loads(out.getvalue())


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "var" / "lib" / "rvm-edge-release"


def test_arm_then_commit_leaves_nothing_pending_and_says_committed(state: Path) -> None:
    armed = run({**ARM, "dir": str(state), "holder": "ops@ctl: deploy 2.0.0"})
    assert armed["changed"] and armed["armed"], armed
    assert armed["pending"]["previous"] == "1.0.0" and "token" not in armed["pending"]
    assert abs(armed["pending"]["deadline"] - (time.time() + 90)) < 5
    # ... and on this boot's clock, which no step of the wall clock moves
    assert armed["pending"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert abs(armed["pending"]["boot_deadline"] - (time.clock_gettime(time.CLOCK_BOOTTIME) + 90)) < 5
    assert json.loads((state / "pending.json").read_text())["token"] == "run-a"

    done = run({"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-a"})
    assert done["changed"] and done["msg"] == "2.0.0 committed" and not done["armed"]
    assert not (state / "pending.json").exists()
    assert done["last"]["result"] == "committed"
    again = run({"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-a"})
    assert not again["changed"] and again["msg"] == "2.0.0 is already committed"


def test_a_rerun_that_switched_nothing_arms_nothing_and_changes_nothing(state: Path) -> None:
    result = run({**ARM, "dir": str(state), "previous": ""})
    assert not result["changed"] and not result["armed"]
    assert "nothing to arm" in result["msg"]
    assert not (state / "pending.json").exists()


def test_a_run_adopts_the_pending_commit_a_dead_run_left(state: Path) -> None:
    run({**ARM, "dir": str(state), "timeout_s": 5})
    adopted = run({**ARM, "dir": str(state), "previous": "", "token": "run-b", "timeout_s": 300})
    assert adopted["changed"] and adopted["armed"] and "adopted" in adopted["msg"]
    assert adopted["pending"]["previous"] == "1.0.0"
    assert adopted["pending"]["deadline"] > time.time() + 250
    refused = run({"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-a"})
    assert refused["failed"] and "armed by another run" in refused["msg"]
    assert run({"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-b"})["changed"]


def test_a_commit_after_the_device_rolled_back_is_refused_with_the_reason(state: Path) -> None:
    run({**ARM, "dir": str(state)})
    store = CommitState(state)  # what the guard does when it goes back
    store.write_last(
        Outcome("2.0.0", "rolled back", time.time(), "2.0.0 was not committed by its deadline (3 s ago)")
    )
    store.clear_pending()
    late = run({"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-a"})
    assert late["failed"]
    assert (
        "2.0.0 was rolled back by the device (2.0.0 was not committed by its deadline (3 s ago))"
        in late["msg"]
    )
    assert "Deploy again" in late["msg"]


def test_a_commit_waits_while_the_guard_holds_the_state_and_then_sees_its_outcome(state: Path) -> None:
    run({**ARM, "dir": str(state)})
    store = CommitState(state)
    got: list[dict[str, Any]] = []
    with store.locked():
        worker = threading.Thread(
            target=lambda: got.append(
                run({"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-a"})
            )
        )
        worker.start()
        worker.join(0.5)
        assert worker.is_alive(), "the commit did not wait for the guard's lock"
        store.write_last(Outcome("2.0.0", "rolled back", time.time(), "the service failed"))
        store.clear_pending()
    worker.join(10)
    assert got and got[0]["failed"] and "rolled back by the device (the service failed)" in got[0]["msg"]


def test_disarm_drops_any_runs_pending_commit_and_keeps_why(state: Path) -> None:
    run({**ARM, "dir": str(state)})
    result = run({"state": "disarmed", "dir": str(state), "reason": "bob@ctl: rollback to 1.0.0"})
    assert result["changed"] and not (state / "pending.json").exists()
    assert result["last"] == {**result["last"], "release": "2.0.0", "result": "rolled back"}
    assert "bob@ctl" in result["last"]["reason"]
    assert not run({"state": "disarmed", "dir": str(state)})["changed"]


def test_check_mode_reports_the_change_and_writes_nothing(state: Path) -> None:
    predicted = run({**ARM, "dir": str(state)}, check=True)
    assert predicted["changed"] and predicted["armed"]
    assert not state.exists()
    run({**ARM, "dir": str(state)})
    before = (state / "pending.json").read_text()
    committed = run(
        {"state": "committed", "dir": str(state), "release": "2.0.0", "token": "run-a"}, check=True
    )
    assert committed["changed"] and (state / "pending.json").read_text() == before
    status = run({"dir": str(state)})
    assert not status["changed"] and status["pending"]["release"] == "2.0.0"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"state": "armed", "release": "2.0.0", "token": "run-z"}, None),  # nothing to arm: no previous
        (
            {"state": "armed", "release": "2.0.0", "previous": "1.0.0", "token": "run-z"},
            "timeout must be > 0",
        ),
        ({"state": "armed", "previous": "1.0.0", "timeout_s": 9, "token": "run-z"}, "release"),
        ({"state": "committed", "release": "2.0.0"}, "token"),
        ({"state": "committed", "release": " ", "token": "run-z"}, "parameter release must not be empty"),
        ({"state": "committed", "release": "2.0.0", "token": "run-z"}, "no pending commit for 2.0.0"),
        ({"state": "frozen"}, "value of state must be one of"),
    ],
)
def test_bad_input_is_named(state: Path, args: dict[str, Any], says: str | None) -> None:
    result = run({**args, "dir": str(state)})
    if says is None:
        assert not result.get("failed") and not result["changed"]
        return
    assert result.get("failed") and says in result["msg"], result["msg"]


def test_a_damaged_pending_record_is_named_not_overwritten(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "pending.json").write_text('{"release": "2.0.0"}')
    result = run({**ARM, "dir": str(state)})
    assert result["failed"] and str(state / "pending.json") in result["msg"] and "lacks" in result["msg"]
    assert (state / "pending.json").read_text() == '{"release": "2.0.0"}'


def test_the_token_never_shows_in_the_output(state: Path) -> None:
    out = json.dumps(run({**ARM, "dir": str(state), "token": "s3cret-run-token"}))
    assert "s3cret-run-token" not in out


def test_documentation_matches_the_argument_spec_and_examples() -> None:
    doc = yaml.safe_load(rvm_commit.DOCUMENTATION)
    assert doc["module"] == "rvm_commit" and set(doc["options"]) == set(rvm_commit.ARGUMENT_SPEC)
    for name, spec in rvm_commit.ARGUMENT_SPEC.items():
        documented = doc["options"][name]
        assert documented["type"] == spec["type"] and documented.get("default") == spec.get("default"), name
        assert documented.get("choices") == spec.get("choices") and documented["description"], name
    for task in yaml.safe_load(rvm_commit.EXAMPLES):
        assert set(task["rvm_commit"]) <= set(doc["options"])
    assert yaml.safe_load(rvm_commit.RETURN)["msg"]["returned"] == "always"


def test_without_a_boot_id_the_clock_is_the_wall_clock_alone(tmp_path: Path) -> None:
    """Where /proc gives no boot id (not Linux, a restricted /proc) deadlines are decided as before."""
    clock = clock_now(str(tmp_path / "no-boot-id"))
    assert clock.boot_id == "" and abs(clock.wall - time.time()) < 5
    (tmp_path / "boot_id").write_text("abc\n")
    assert clock_now(str(tmp_path / "boot_id")).boot_id == "abc"
