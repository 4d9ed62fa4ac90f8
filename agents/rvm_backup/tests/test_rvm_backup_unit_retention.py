"""The retention policy as restic options, the check rotation, and what a run leaves in state.json: pure
functions, so each rule is shown directly (the end-to-end tests show restic applying them)."""

from __future__ import annotations

from typing import Any

import pytest

from rvm_backup.config import KEEP_KEYS
from rvm_backup.restic import keep_options
from rvm_backup.state import Outcome, next_subset, record


def test_keep_options_in_a_fixed_order_whatever_the_order_of_the_config() -> None:
    retention = {"keep_monthly": 6, "keep_weekly": 4, "keep_daily": 7, "keep_hourly": 24, "keep_last": 3}

    assert keep_options(retention) == [
        "--keep-last",
        "3",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "6",
    ]


def test_a_zero_keep_is_no_rule_not_keep_none() -> None:
    retention = dict.fromkeys(KEEP_KEYS, 0) | {"keep_daily": 7}

    assert keep_options(retention) == ["--keep-daily", "7"]
    assert keep_options(dict.fromkeys(KEEP_KEYS, 0)) == [], (
        "all zero: forget is skipped, nothing is kept by rule"
    )


@pytest.mark.parametrize(
    ("state", "subsets", "expected"),
    [
        ({}, 7, 1),
        ({"next_check_subset": 3}, 7, 3),
        ({"next_check_subset": 7}, 7, 7),
        ({"next_check_subset": 6}, 3, 1),  # check_subsets lowered below the next subset: start again
        ({"next_check_subset": 0}, 3, 1),
        ({"next_check_subset": "2"}, 3, 1),  # a hand-edited state.json
    ],
)
def test_the_check_subset_to_read_next(state: dict[str, Any], subsets: int, expected: int) -> None:
    assert next_subset(state, subsets) == expected


def test_a_failed_run_keeps_the_last_success_and_the_last_backup_figures() -> None:
    state: dict[str, Any] = {}
    good = Outcome(
        started=100.0, snapshot="a" * 64, added_bytes=2048, files_processed=3, snapshots=2, check_ok=True
    )
    good.check_subset = "1/7"
    record(state, good, finished=104.5)
    failed = Outcome(
        started=200.0, error="repository: the password file /etc/rvm-backup/password does not exist"
    )

    record(state, failed, finished=201.0)

    assert state == {
        "last_run_timestamp": 201.0,
        "last_run_ok": False,
        "last_run_seconds": 1.0,
        "last_error": failed.error,
        "last_success_timestamp": 104.5,
        "last_snapshot": "a" * 64,
        "last_added_bytes": 2048,
        "last_files_processed": 3,
        "snapshots": 2,
        "last_check_ok": True,
        "last_check_subset": "1/7",
    }


def test_a_failed_check_is_recorded_as_such() -> None:
    state: dict[str, Any] = {"last_check_ok": True, "last_check_subset": "1/3"}
    outcome = Outcome(started=0.0, check_ok=False, check_subset="2/3", error="check: restic check failed")

    record(state, outcome, finished=1.0)

    assert (state["last_check_ok"], state["last_check_subset"], state["last_run_ok"]) == (False, "2/3", False)
