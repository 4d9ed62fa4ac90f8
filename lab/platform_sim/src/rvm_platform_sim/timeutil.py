"""Timestamps in the formats the platform uses, from one clock the tests can reason about."""

from __future__ import annotations

from datetime import datetime, timezone


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def iso8601(moment: datetime) -> str:
    """Carbon's ``toIso8601String()``: seconds precision with a numeric offset (``+00:00``)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def iso8601_precise(moment: datetime) -> str:
    """For read-back records: microseconds, so tests can order and diff events closely."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
