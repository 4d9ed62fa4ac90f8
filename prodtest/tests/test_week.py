"""The week's bookkeeping: a step holds only when it checked something and every check held."""

from __future__ import annotations

from prodtest.week import Step, _epoch


def test_a_step_holds_only_with_checks_all_holding_and_no_error() -> None:
    assert not Step("nothing checked").ok  # a step that checked nothing proves nothing
    s = Step("deploy")
    s.check("device", "ready on 1.0", True)
    s.check("platform", "heartbeat says 1.0", True)
    assert s.ok
    s.check("monitoring", "Prometheus sees 1.0", False, "seen ['0.9']")
    assert not s.ok
    failed = Step("restore")
    failed.check("device", "ready", True)
    failed.error = "restore.yml timed out"
    assert not failed.ok
    assert s.to_json()["checks"][-1] == {
        "source": "monitoring", "what": "Prometheus sees 1.0", "ok": False, "detail": "seen ['0.9']",
    }  # fmt: skip


def test_the_simulators_stamps_read_as_epoch_seconds() -> None:
    assert _epoch("2026-12-06T19:30:00+00:00") == 1796585400.0
    assert _epoch("2026-12-06T19:30:00.250000Z") == 1796585400.25
    assert _epoch(None) == 0.0 and _epoch(12.5) == 12.5
