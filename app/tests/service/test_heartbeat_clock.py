"""The heartbeat's age is measured on the monotonic clock: a wall-clock jump (NTP correcting a device
that booted without an RTC, an operator's `date -s`) must not make a fresh heartbeat look an hour old,
which would page someone (RvmHeartbeatStale fires above 300 s), nor make it negative."""

from __future__ import annotations

import time

import pytest

from rvm_edge.service.heartbeat import LinkState


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0])
def test_a_wall_clock_jump_leaves_the_heartbeat_age_alone(
    monkeypatch: pytest.MonkeyPatch, jump_s: float
) -> None:
    state = LinkState(heartbeat_ok_mono=time.monotonic() - 12.0, heartbeat_status="ok")
    wall = time.time()
    monkeypatch.setattr(time, "time", lambda: wall + jump_s)
    assert 12.0 <= state.heartbeat_age_s < 20.0
    assert 12.0 <= state.to_json()["heartbeat_age_s"] < 20.0


def test_no_heartbeat_yet_has_no_age() -> None:
    assert LinkState().heartbeat_age_s is None and LinkState().to_json()["heartbeat_age_s"] is None
