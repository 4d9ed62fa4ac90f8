"""Faults carried out for real over HTTP: delays, 5xx, dropped replies, outages."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import SimServer


def _poll(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` until it is true or the deadline passes (returns the last result)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_latency_delays_the_reply(sim: SimServer, machine: dict[str, Any]) -> None:
    started = time.monotonic()
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200
    baseline = time.monotonic() - started
    sim.admin_ok("PUT", "/faults", json={"latency_ms": 600})
    started = time.monotonic()
    reply = sim.edge("heartbeat", machine["api_key"], json_body={})
    assert reply.status_code == 200
    assert time.monotonic() - started >= 0.6 > baseline
    assert sim.admin_ok("GET", "/requests")[-1]["fault"] == "latency"


def test_latency_beyond_the_client_timeout_still_stores_the_request(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    sim.admin_ok("PUT", "/faults", json={"latency_ms": 1500, "endpoints": ["deposit"]})
    with pytest.raises(requests.exceptions.ReadTimeout):
        sim.edge("deposit", machine["api_key"], files=deposit_form(), timeout=0.5)
    assert len(sim.admin_ok("GET", "/deposits")) == 1


def test_error_next_answers_5xx_and_stores_nothing(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    sim.admin_ok("PUT", "/faults", json={"error_next": 2, "error_status": 503})
    for _ in range(2):
        reply = sim.edge("deposit", machine["api_key"], files=deposit_form())
        assert reply.status_code == 503
        assert reply.json() == {"status": "error", "message": "Server Error"}
    assert sim.admin_ok("GET", "/deposits") == []
    assert sim.edge("deposit", machine["api_key"], files=deposit_form()).status_code == 201
    faults = sim.admin_ok("GET", "/faults")
    assert faults["fired"] == {"error_503": 2}
    assert faults["pending"]["error_next"] == 0


def test_error_rate_with_a_seed_repeats_exactly(sim: SimServer, machine: dict[str, Any]) -> None:
    def statuses() -> list[int]:
        sim.admin_ok("PUT", "/faults", json={"error_rate": 0.5, "seed": 42})
        return [sim.edge("heartbeat", machine["api_key"], json_body={}).status_code for _ in range(20)]

    first = statuses()
    assert set(first) == {200, 500}
    assert statuses() == first


def test_drop_closes_the_connection_after_storing_the_deposit(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    sim.admin_ok("PUT", "/faults", json={"drop_next": 1, "endpoints": ["deposit"]})
    with pytest.raises(requests.exceptions.ConnectionError):
        sim.edge("deposit", machine["api_key"], files=deposit_form())
    # The device never got a reply, but the platform has the deposit: a resend duplicates it.
    assert len(sim.admin_ok("GET", "/deposits")) == 1
    assert sim.edge("deposit", machine["api_key"], files=deposit_form()).status_code == 201
    deposits = sim.admin_ok("GET", "/deposits")
    assert [d["deposit_id"] for d in deposits] == [deposits[0]["deposit_id"]] * 2
    log = sim.admin_ok("GET", "/requests")
    assert [(r["status"], r["fault"]) for r in log] == [(None, "drop"), (201, "")]


def test_dropped_heartbeat_loses_its_commands(sim: SimServer, machine: dict[str, Any]) -> None:
    """Commands are forgotten when the server replies, even if the reply never arrives."""
    sim.admin_ok("POST", f"/machines/{machine['id']}/commands", json={"action": "RESTART"})
    sim.admin_ok("PUT", "/faults", json={"drop_next": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        sim.edge("heartbeat", machine["api_key"], json_body={})
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).json()["commands"] == []


def test_faults_apply_only_to_the_chosen_endpoints(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.admin_ok("PUT", "/faults", json={"error_rate": 1, "endpoints": ["deposit", "sync-offline"]})
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200
    assert sim.edge("sync-offline", machine["api_key"], json_body={"transactions": []}).status_code == 500


def test_outage_503_for_its_window_then_recovers(sim: SimServer, machine: dict[str, Any]) -> None:
    started = time.monotonic()
    state = sim.admin_ok("POST", "/outage", json={"seconds": 1.5})
    assert state["outage"]["mode"] == "503"
    reply = sim.edge("heartbeat", machine["api_key"], json_body={})
    assert reply.status_code == 503
    assert reply.json() == {"message": "Service Unavailable"}
    assert 1 <= int(reply.headers["Retry-After"]) <= 2
    assert sim.admin_ok("GET", "/heartbeats") == []
    assert _poll(lambda: sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200, 10)
    assert time.monotonic() - started >= 1.5
    assert sim.admin_ok("GET", "/faults")["outage"] is None


def test_outage_until_cleared(sim: SimServer, machine: dict[str, Any]) -> None:
    state = sim.admin_ok("POST", "/outage", json={})
    assert state["outage"] == {"mode": "503", "remaining_s": None, "until_cleared": True}
    assert sim.edge("handshake", machine["api_key"], json_body={}).status_code == 503
    assert sim.admin_ok("GET", "/machines")[0]["id"] == machine["id"]  # the admin API stays up
    sim.admin_ok("DELETE", "/outage")
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200


def test_reset_mode_outage_gives_no_http_reply_at_all(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    sim.admin_ok("POST", "/outage", json={"mode": "reset"})
    with pytest.raises(requests.exceptions.ConnectionError):
        sim.edge("deposit", machine["api_key"], files=deposit_form())
    assert sim.admin_ok("GET", "/deposits") == []
    assert sim.admin_ok("GET", "/requests")[-1]["fault"] == "outage_reset"
    sim.admin_ok("DELETE", "/outage")
    assert sim.edge("deposit", machine["api_key"], files=deposit_form()).status_code == 201


def test_clearing_faults_restores_normal_service(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.admin_ok("PUT", "/faults", json={"error_rate": 1})
    sim.admin_ok("POST", "/outage", json={"seconds": 60})
    cleared = sim.admin_ok("DELETE", "/faults")
    assert cleared["outage"] is None and cleared["faults"]["error_rate"] == 0
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200
