"""Figures, targets and verdicts: the pure arithmetic of the report (unit-tested, no lab needed).

A figure is one measured number with its unit, the seed's target (or our own budget where the
seed has none) and the direction that passes. ``None`` as a value means "not measured" (the stage
was skipped or interrupted), which the report shows as such rather than as a pass or a miss.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Op = Literal["<=", ">=", "=="]
Verdict = Literal["pass", "miss", "not measured", "info"]


@dataclass(frozen=True)
class Figure:
    """One measured number; ``target`` None means reported for information only."""

    key: str
    title: str
    value: float | None
    unit: str
    target: float | None = None
    op: Op = "<="
    stage: str = ""
    note: str = ""

    @property
    def verdict(self) -> Verdict:
        if self.value is None:
            return "not measured"
        if self.target is None:
            return "info"
        ok = {
            "<=": self.value <= self.target,
            ">=": self.value >= self.target,
            "==": math.isclose(self.value, self.target, abs_tol=1e-9),
        }[self.op]
        return "pass" if ok else "miss"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class Plot:
    """A time series plot: lines of (x, y) points, its units and the target line (None: no target)."""

    title: str
    xlabel: str
    ylabel: str
    target: float | None
    target_label: str = "target"
    lines: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    kind: Literal["line", "bar"] = "line"


@dataclass
class Results:
    """Everything one run measured: figures, series for the plots, raw data per stage."""

    profile: str
    started: str
    figures: list[Figure] = field(default_factory=list)
    plots: dict[str, Plot] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # stage -> done / interrupted / failed: why
    finished: str | None = None

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "started": self.started,
            "finished": self.finished,
            "stages": self.stages,
            "figures": [f.to_json() for f in self.figures],
            "plots": {k: asdict(v) for k, v in self.plots.items()},
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative bucket counts {upper bound: count}.

    Linear interpolation inside the bucket the rank falls in; a rank in the +Inf bucket answers the
    highest finite bound (as Prometheus does). None when the histogram is empty.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def bucket_delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    """Cumulative buckets of the observations between two scrapes (a counter reset keeps ``after``)."""
    if any(after.get(b, 0.0) < v for b, v in before.items()):
        return dict(after)
    return {b: v - before.get(b, 0.0) for b, v in after.items()}


def growth_ratio(samples: Sequence[float]) -> float | None:
    """Median of the last third over the median of the first third, minus one: "is RSS flat?".

    Medians of thirds rather than first/last samples so one allocation spike does not decide.
    """
    if len(samples) < 3:
        return None
    third = len(samples) // 3
    first, last = percentile(samples[:third], 50), percentile(samples[-third:], 50)
    if not first:
        return None
    return (last or 0.0) / first - 1.0


def duplicates_and_missing(sent: Iterable[str], received: Iterable[str]) -> tuple[int, int]:
    """(ids received more than once, ids sent but never received): data consistency by deposit_id."""
    counts = Counter(received)
    dup = sum(1 for c in counts.values() if c > 1)
    missing = sum(1 for s in set(sent) if s not in counts)
    return dup, missing


def resent_and_duplicated(received: Iterable[str], attempts: Mapping[str, int]) -> tuple[int, int]:
    """(ids stored more than once that the device sent again after an attempt it never heard back
    from, ids stored more than the device attempted): the platform contract allows the first (a
    kill -9 between the platform's 201 and the outbox's mark resends; the server may dedupe by
    deposit_id), never the second."""
    counts = Counter(received)
    resent = sum(1 for i, c in counts.items() if 1 < c <= attempts.get(i, 0))
    duplicated = sum(1 for i, c in counts.items() if c > 1 and c > attempts.get(i, 0))
    return resent, duplicated


def compare(current: Figure, previous: Mapping[str, Any] | None) -> str:
    """The previous run's value of the same figure and the change, as the report shows it."""
    if not previous or previous.get("value") is None:
        return "—"
    prev = float(previous["value"])
    if current.value is None:
        return f"{prev:.4g}"
    if prev == 0:
        return f"{prev:.4g} ({'=' if current.value == 0 else 'new'})"
    change = (current.value - prev) / abs(prev) * 100
    return f"{prev:.4g} ({change:+.0f} %)"


def previous_by_key(previous_json: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not previous_json:
        return {}
    return {f["key"]: f for f in previous_json.get("figures", []) if isinstance(f, dict) and "key" in f}
