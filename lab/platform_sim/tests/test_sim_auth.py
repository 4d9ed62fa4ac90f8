"""ValidateRvmApiKey on every edge endpoint: 401 MISSING/INVALID, 403 MACHINE_BLOCKED."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SimServer

ENDPOINTS = ["handshake", "heartbeat", "deposit", "sync-offline"]


def _assert_error(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert body["status"] == "error"
    assert body["error_code"] == code
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_missing_key_is_401_missing_api_key(sim: SimServer, endpoint: str) -> None:
    _assert_error(sim.edge(endpoint, None, json_body={}), 401, "MISSING_API_KEY")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_empty_key_is_401_missing_api_key(sim: SimServer, endpoint: str) -> None:
    _assert_error(sim.edge(endpoint, "", json_body={}), 401, "MISSING_API_KEY")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_key_is_401_invalid_api_key(sim: SimServer, machine: dict[str, Any], endpoint: str) -> None:
    _assert_error(sim.edge(endpoint, machine["api_key"] + "x", json_body={}), 401, "INVALID_API_KEY")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("action", ["block", "suspend"])
def test_blocked_or_suspended_machine_is_403(
    sim: SimServer, machine: dict[str, Any], endpoint: str, action: str
) -> None:
    updated = sim.admin_ok("POST", f"/machines/{machine['id']}/{action}")
    assert updated["status"] == {"block": "blocked", "suspend": "suspended"}[action]
    _assert_error(sim.edge(endpoint, machine["api_key"], json_body={}), 403, "MACHINE_BLOCKED")


def test_auth_is_checked_before_validation(sim: SimServer) -> None:
    """A request that is both unauthenticated and invalid gets the 401, as middleware runs first."""
    _assert_error(sim.edge("handshake", None, json_body={"name": 5}), 401, "MISSING_API_KEY")


def test_unblock_lets_the_machine_back_in(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.admin_ok("POST", f"/machines/{machine['id']}/block")
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 403
    assert sim.admin_ok("POST", f"/machines/{machine['id']}/unblock")["status"] == "active"
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200


def test_rotated_key_replaces_the_old_one(sim: SimServer, machine: dict[str, Any]) -> None:
    rotated = sim.admin_ok("POST", f"/machines/{machine['id']}/keys")
    assert rotated["api_key"] != machine["api_key"]
    assert rotated["api_key"].startswith("rvm_") and len(rotated["api_key"]) == 36
    _assert_error(sim.edge("heartbeat", machine["api_key"], json_body={}), 401, "INVALID_API_KEY")
    assert sim.edge("heartbeat", rotated["api_key"], json_body={}).status_code == 200


def test_rejected_requests_are_logged_with_their_status(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.edge("heartbeat", None, json_body={})
    sim.edge("heartbeat", "rvm_nope", json_body={})
    log = sim.admin_ok("GET", "/requests")
    assert [(r["endpoint"], r["status"], r["machine_id"]) for r in log] == [
        ("heartbeat", 401, None),
        ("heartbeat", 401, None),
    ]
