"""Fault decisions on their own: seeded repeatability, counters, endpoint scoping, outage windows."""

from __future__ import annotations

from rvm_platform_sim.faults import FaultSettings, FaultState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _labels(state: FaultState, n: int, endpoint: str = "deposit") -> list[str]:
    return [state.decide(endpoint).label for _ in range(n)]


def test_same_seed_gives_the_same_fault_sequence() -> None:
    settings = FaultSettings(error_rate=0.3, drop_rate=0.3, seed=7)
    first, second = FaultState(), FaultState()
    first.configure(settings)
    second.configure(settings)
    sequence = _labels(first, 200)
    assert sequence == _labels(second, 200)
    assert {"error_500", "drop", ""} <= set(sequence)
    other = FaultState()
    other.configure(FaultSettings(error_rate=0.3, drop_rate=0.3, seed=8))
    assert _labels(other, 200) != sequence


def test_rates_are_roughly_honoured() -> None:
    state = FaultState()
    state.configure(FaultSettings(error_rate=0.25, seed=1))
    errors = _labels(state, 4000).count("error_500")
    assert 800 < errors < 1200


def test_next_counters_fire_exactly_that_many_times_first() -> None:
    state = FaultState()
    state.configure(FaultSettings(error_next=2, drop_next=1, error_status=503))
    assert _labels(state, 5) == ["error_503", "error_503", "drop", "", ""]
    assert state.fired == {"error_503": 2, "drop": 1}


def test_untargeted_endpoints_are_never_faulted_and_do_not_consume_counters() -> None:
    state = FaultState()
    state.configure(FaultSettings(drop_next=1, endpoints=("deposit",)))
    assert _labels(state, 3, "heartbeat") == ["", "", ""]
    assert _labels(state, 2, "deposit") == ["drop", ""]


def test_latency_stays_within_the_jitter_band() -> None:
    state = FaultState()
    state.configure(FaultSettings(latency_ms=200, latency_jitter_ms=50, seed=3))
    delays = [state.decide("heartbeat").latency_s for _ in range(300)]
    assert min(delays) >= 0.150
    assert max(delays) <= 0.250
    assert max(delays) - min(delays) > 0.05


def test_sync_failure_is_only_attached_to_sync_offline() -> None:
    state = FaultState()
    state.configure(FaultSettings(sync_fail_after=2))
    assert state.decide("sync-offline").sync_fail_after == 2
    assert state.decide("deposit").sync_fail_after is None


def test_outage_window_ends_by_itself() -> None:
    clock = FakeClock()
    state = FaultState(clock=clock)
    state.start_outage(30, "503")
    assert state.outage_mode() == "503"
    assert state.outage_remaining_s() == 30
    clock.now += 29.9
    assert state.outage_mode() == "503"
    clock.now += 0.1
    assert state.outage_mode() is None
    assert state.to_json()["outage"] is None


def test_open_ended_outage_lasts_until_cleared() -> None:
    clock = FakeClock()
    state = FaultState(clock=clock)
    state.start_outage(None, "reset")
    clock.now += 10**6
    assert state.outage_mode() == "reset"
    assert state.to_json()["outage"] == {"mode": "reset", "remaining_s": None, "until_cleared": True}
    assert state.end_outage() is True
    assert state.outage_mode() is None
