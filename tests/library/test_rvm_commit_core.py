"""Commit-or-rollback decided on the device (issue 16): when the guard waits, rolls back or steps
aside, and when a commit is refused; the deadline on the boot clock and the wall clock. Pure decisions."""

from __future__ import annotations

import re

import pytest
from ansible.module_utils.rvm_commit_core import (
    Clock,
    Outcome,
    Pending,
    PendingError,
    arm,
    commit,
    decide,
)

T0 = 1_800_000_000.0


@pytest.fixture
def pending() -> Pending:
    return arm("2.0.0", "1.0.0", now=T0, timeout_s=90, token="run-a", holder="ops@ctl: deploy 2.0.0")


def test_arming_records_a_wall_clock_deadline_that_survives_a_round_trip(pending: Pending) -> None:
    assert pending.deadline == T0 + 90
    assert Pending.from_json(pending.to_json()) == pending


@pytest.mark.parametrize(
    ("release", "previous", "timeout", "says"),
    [
        ("2.0.0", "", 90, "no release to fall back to"),
        ("2.0.0", "2.0.0", 90, "already current"),
        ("2.0.0", "1.0.0", 0, "timeout must be > 0"),
    ],
)
def test_arming_without_a_way_back_is_refused(release: str, previous: str, timeout: float, says: str) -> None:
    with pytest.raises(PendingError, match=says):
        arm(release, previous, now=T0, timeout_s=timeout, token="t", holder="h")


def test_the_guard_waits_until_the_deadline_then_rolls_back(pending: Pending) -> None:
    assert decide(pending, T0 + 89, current="2.0.0", service_failed=False).action == "wait"
    late = decide(pending, T0 + 95, current="2.0.0", service_failed=False)
    assert late.action == "rollback" and "not committed by its deadline (5 s ago)" in late.reason


def test_a_reboot_does_not_reset_the_deadline(pending: Pending) -> None:
    """The record is read back from disk after the boot; the deadline is wall-clock time."""
    after_boot = Pending.from_json(pending.to_json())
    assert decide(after_boot, T0 + 300, current="2.0.0", service_failed=False).action == "rollback"


BOOT = "6f1c0e2a-0000-4000-8000-000000000001"
UP = 400.0  # seconds since that boot when the deadline was armed


@pytest.fixture
def on_boot_clock() -> Pending:
    return arm("2.0.0", "1.0.0", Clock(T0, BOOT, UP), 90, "run-a", "ops@ctl: deploy 2.0.0")


@pytest.mark.parametrize("step_s", [3600.0, -3600.0, -86400.0 * 365])
def test_a_clock_step_in_the_same_boot_moves_no_deadline(on_boot_clock: Pending, step_s: float) -> None:
    """NTP stepping a stale clock (or `date -s`) while the gate runs: 30 s in, the wall clock says an
    hour later or earlier (or a year earlier); the boot clock says 30 s, so the guard waits; 91 s in
    it rolls back, whatever the wall clock says."""
    assert Pending.from_json(on_boot_clock.to_json()) == on_boot_clock
    early = decide(
        on_boot_clock, Clock(T0 + 30 + step_s, BOOT, UP + 30), current="2.0.0", service_failed=False
    )
    assert early.action == "wait" and early.reason.startswith("60 s left"), early
    late = decide(
        on_boot_clock, Clock(T0 + 91 + step_s, BOOT, UP + 91), current="2.0.0", service_failed=False
    )
    assert late.action == "rollback" and "(1 s ago)" in late.reason, late


def test_after_a_reboot_the_wall_clock_decides(on_boot_clock: Pending) -> None:
    """Another boot's clock starts again from 0: the wall-clock deadline (it survives the boot) decides."""
    other = "6f1c0e2a-0000-4000-8000-000000000002"
    assert decide(on_boot_clock, Clock(T0 + 60, other, 5.0), "2.0.0", False).action == "wait"
    assert decide(on_boot_clock, Clock(T0 + 95, other, 5.0), "2.0.0", False).action == "rollback"


def test_a_record_from_before_the_boot_clock_is_read_by_the_wall_clock() -> None:
    old = Pending.from_json('{"release": "2", "previous": "1", "deadline": 100, "token": "t", "holder": "h"}')
    assert (old.boot_id, old.boot_deadline) == ("", 0.0)
    assert decide(old, Clock(99, BOOT, 10_000.0), "2", False).action == "wait"
    assert decide(old, Clock(101, BOOT, 0.0), "2", False).action == "rollback"


def test_an_adopted_commit_gets_a_new_deadline_on_both_clocks(on_boot_clock: Pending) -> None:
    adopted = on_boot_clock.renewed(Clock(T0 + 50, BOOT, UP + 50), 120, "run-b", "ops@ctl-2: deploy 2.0.0")
    assert (adopted.deadline, adopted.boot_deadline, adopted.token) == (T0 + 170, UP + 170, "run-b")


def test_a_failed_service_rolls_back_before_the_deadline(pending: Pending) -> None:
    decision = decide(pending, T0 + 10, current="2.0.0", service_failed=True)
    assert decision.action == "rollback" and "failed" in decision.reason


def test_a_manual_rollback_clears_the_pending_commit(pending: Pending) -> None:
    assert decide(pending, T0 + 500, current="1.0.0", service_failed=True).action == "clear"
    assert decide(None, T0, current="1.0.0", service_failed=False).action == "none"


def test_only_the_run_that_armed_it_commits(pending: Pending) -> None:
    assert commit(pending, None, "2.0.0", "run-a") == (True, "2.0.0 committed")
    with pytest.raises(PendingError, match="armed by another run"):
        commit(pending, None, "2.0.0", "run-b")
    with pytest.raises(PendingError, match=re.escape("is for 2.0.0, not 3.0.0")):
        commit(pending, None, "3.0.0", "run-a")


def test_a_commit_after_the_device_rolled_back_is_refused_with_the_reason() -> None:
    last = Outcome(
        "2.0.0", "rolled back", T0 + 91, reason="2.0.0 was not committed by its deadline (1 s ago)"
    )
    with pytest.raises(
        PendingError, match=r"rolled back by the device \(2.0.0 was not committed.*Deploy again"
    ):
        commit(None, last, "2.0.0", "run-a")


def test_a_repeated_commit_changes_nothing() -> None:
    assert commit(None, Outcome("2.0.0", "committed", T0), "2.0.0", "run-a") == (
        False,
        "2.0.0 is already committed",
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"release": "2"}', "lacks deadline, holder, previous, token"),
        (
            '{"release": "2", "previous": "1", "deadline": 1, "token": "t", "holder": "h", "boot_deadline": "x"}',
            "boot_deadline is not a number",
        ),
        (
            '{"release": "2", "previous": "1", "deadline": 1, "token": "t", "holder": "h", "boot_id": 7}',
            "boot_id is not text",
        ),
        (
            '{"release": "2", "previous": "1", "deadline": "soon", "token": "t", "holder": "h"}',
            "not a number",
        ),
        (
            '{"release": "", "previous": "1", "deadline": 1, "token": "t", "holder": "h"}',
            "empty or non-text release",
        ),
    ],
)
def test_a_damaged_record_is_named_not_guessed(text: str, says: str) -> None:
    with pytest.raises(PendingError, match=says):
        Pending.from_json(text)
