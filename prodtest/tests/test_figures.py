"""The report's arithmetic: verdicts, percentiles, histogram quantiles, flatness, consistency, comparison."""

from __future__ import annotations

import math

import pytest

from prodtest.figures import (
    Figure,
    bucket_delta,
    compare,
    duplicates_and_missing,
    growth_ratio,
    histogram_quantile,
    percentile,
    previous_by_key,
    resent_and_duplicated,
)


@pytest.mark.parametrize(
    ("value", "target", "op", "verdict"),
    [
        (1.9, 2.0, "<=", "pass"),
        (2.0, 2.0, "<=", "pass"),
        (2.1, 2.0, "<=", "miss"),
        (99.95, 99.9, ">=", "pass"),
        (99.8, 99.9, ">=", "miss"),
        (0.0, 0.0, "==", "pass"),
        (1.0, 0.0, "==", "miss"),
        (None, 2.0, "<=", "not measured"),
        (3.0, None, "<=", "info"),
    ],
)
def test_verdict_follows_the_direction_of_the_target(value, target, op, verdict):
    assert Figure("k", "t", value, "s", target, op).verdict == verdict


def test_percentile_interpolates_like_numpy():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0


def test_histogram_quantile_matches_prometheus():
    # 100 observations: 50 under 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1]
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.1 + 0.4 * 20 / 40)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.5 + 0.5 * 5 / 10)
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_histogram_quantile_in_the_inf_bucket_answers_the_highest_bound():
    assert histogram_quantile(0.99, {1.0: 10.0, 10.0: 50.0, math.inf: 100.0}) == 10.0


def test_bucket_delta_is_the_window_and_survives_a_restart():
    before = {0.1: 10.0, math.inf: 20.0}
    assert bucket_delta({0.1: 15.0, math.inf: 30.0}, before) == {0.1: 5.0, math.inf: 10.0}
    # the service restarted: counters began again, so the window is what the new process saw
    assert bucket_delta({0.1: 2.0, math.inf: 3.0}, before) == {0.1: 2.0, math.inf: 3.0}


def test_growth_ratio_flags_a_leak_not_a_spike():
    assert growth_ratio([100.0] * 9) == 0.0
    assert growth_ratio([100, 100, 100, 100, 500, 100, 100, 100, 100]) == 0.0
    assert growth_ratio([100, 100, 100, 120, 130, 140, 150, 160, 170]) == pytest.approx(0.6)
    assert growth_ratio([1.0, 2.0]) is None


def test_consistency_counts_duplicates_and_losses_by_deposit_id():
    assert duplicates_and_missing(["a", "b", "c"], ["a", "b", "c"]) == (0, 0)
    assert duplicates_and_missing(["a", "b", "c"], ["a", "a", "c"]) == (1, 1)


def test_a_resend_after_an_unanswered_attempt_is_allowed_and_more_copies_than_attempts_are_not():
    # b: killed between the platform's 201 and the outbox mark, sent again (2 attempts, 2 copies)
    assert resent_and_duplicated(["a", "b", "b", "c"], {"a": 1, "b": 2, "c": 1}) == (1, 0)
    # c: stored twice after one attempt; d: three copies from two attempts
    assert resent_and_duplicated(["c", "c", "d", "d", "d"], {"c": 1, "d": 2}) == (0, 2)
    # an id the device never recorded counts as a duplicate when repeated
    assert resent_and_duplicated(["x", "x"], {}) == (0, 1)


def test_compare_shows_the_previous_value_and_the_change():
    fig = Figure("k", "t", 110.0, "ms", 500)
    assert compare(fig, {"value": 100.0}) == "100 (+10 %)"
    assert compare(fig, None) == "—"
    assert compare(Figure("k", "t", None, "ms"), {"value": 3.0}) == "3"
    assert compare(Figure("k", "t", 0.0, "n"), {"value": 0.0}) == "0 (=)"


def test_previous_by_key_ignores_junk():
    assert previous_by_key({"figures": [{"key": "a", "value": 1}, "x", {"no": "key"}]}) == {
        "a": {"key": "a", "value": 1}
    }
    assert previous_by_key(None) == {}
