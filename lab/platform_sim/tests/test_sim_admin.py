"""The admin API: its token, machine set-up, input checks, read-back and reset."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import SimServer

READ_BACK_PATHS = (
    "/handshakes",
    "/heartbeats",
    "/deposits",
    "/offline-transactions",
    "/offline-batches",
    "/requests",
)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-wrong-token", "Basic abc", "Bearer "])
def test_admin_api_needs_its_token(sim: SimServer, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    reply = sim.http.get(f"{sim.base_url}{sim.admin_prefix}/machines", headers=headers, timeout=10)
    assert reply.status_code == 401
    assert "admin token" in reply.json()["error"]
    create = sim.http.post(f"{sim.base_url}{sim.admin_prefix}/machines", json={}, headers=headers, timeout=10)
    assert create.status_code == 401
    assert sim.admin_ok("GET", "/machines") == []


def test_edge_api_key_is_not_an_admin_token(sim: SimServer, machine: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {machine['api_key']}", "X-RVM-API-KEY": machine["api_key"]}
    reply = sim.http.get(f"{sim.base_url}{sim.admin_prefix}/deposits", headers=headers, timeout=10)
    assert reply.status_code == 401


def test_health_needs_no_token(sim: SimServer) -> None:
    reply = sim.http.get(f"{sim.base_url}{sim.admin_prefix}/health", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "journal_mode": "wal"}


def test_create_machine_defaults(sim: SimServer) -> None:
    machine = sim.create_machine()
    assert machine["api_key"].startswith("rvm_") and len(machine["api_key"]) == 36
    assert machine["status"] == "active"
    assert machine["technician"] == "lab-technician"
    assert machine["name"] == "RVM Lab 1"
    assert sim.create_machine()["name"] == "RVM Lab 2"


def test_create_machine_with_chosen_values(sim: SimServer) -> None:
    machine = sim.create_machine(
        name="RVM Mall C",
        api_key="rvm_" + "k" * 32,
        technician="Sari",
        timezone="Asia/Makassar",
        status="suspended",
    )
    assert (
        machine["name"],
        machine["api_key"],
        machine["technician"],
        machine["timezone"],
        machine["status"],
    ) == (
        "RVM Mall C",
        "rvm_" + "k" * 32,
        "Sari",
        "Asia/Makassar",
        "suspended",
    )
    assert sim.admin_ok("GET", f"/machines/{machine['id']}") == machine
    assert [m["id"] for m in sim.admin_ok("GET", "/machines")] == [machine["id"]]


def test_duplicate_key_is_409(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.admin("POST", "/machines", json={"api_key": machine["api_key"]})
    assert reply.status_code == 409
    other = sim.create_machine()
    rotate = sim.admin("POST", f"/machines/{other['id']}/keys", json={"api_key": machine["api_key"]})
    assert rotate.status_code == 409


def test_rotate_to_a_chosen_key(sim: SimServer, machine: dict[str, Any]) -> None:
    chosen = "rvm_" + "z" * 32
    assert (
        sim.admin_ok("POST", f"/machines/{machine['id']}/keys", json={"api_key": chosen})["api_key"] == chosen
    )
    assert sim.edge("heartbeat", chosen, json_body={}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/machines", {"status": "gone"}, "status"),
        ("POST", "/machines", {"api_key": "short"}, "api_key"),
        ("POST", "/machines", {"colour": "red"}, "colour"),
        ("PUT", "/faults", {"error_rate": 1.5}, "error_rate"),
        ("PUT", "/faults", {"error_status": 404}, "error_status"),
        ("PUT", "/faults", {"latency_ms": -1}, "latency_ms"),
        ("PUT", "/faults", {"drop_next": 1.5}, "drop_next"),
        ("PUT", "/faults", {"endpoints": ["deposit", "login"]}, "endpoints.1"),
        ("PUT", "/faults", {"latency": 100}, "latency"),
        ("POST", "/outage", {"mode": "refuse"}, "mode"),
        ("POST", "/outage", {"seconds": "soon"}, "seconds"),
        ("POST", "/reset", {"keep_machines": "maybe"}, "keep_machines"),
    ],
)
def test_bad_admin_input_is_422_naming_the_field(
    sim: SimServer, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    reply = sim.admin(method, path, json=body)
    assert reply.status_code == 422, reply.text
    assert list(reply.json()["errors"]) == [field]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "field"),
    [
        ("PUT", "/ai-model", {"hash": "ab" * 32}, "target_version"),
        ("PUT", "/ai-model", {"target_version": "v2", "hash": "not-a-sha256"}, "hash"),
        ("PUT", "/technician", {}, "name"),
        ("POST", "/commands", {"action": ""}, "action"),
        ("PATCH", "/policy", {"bin_full_threshold_percent": 101}, "bin_full_threshold_percent"),
        ("PATCH", "/policy", {"is_maintenance_mode": "yes"}, "is_maintenance_mode"),
    ],
)
def test_bad_machine_settings_are_422(
    sim: SimServer, machine: dict[str, Any], method: str, suffix: str, body: dict[str, Any], field: str
) -> None:
    reply = sim.admin(method, f"/machines/{machine['id']}{suffix}", json=body)
    assert reply.status_code == 422, reply.text
    assert list(reply.json()["errors"]) == [field]


def test_body_must_be_a_json_object(sim: SimServer) -> None:
    reply = sim.admin("POST", "/machines", data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert reply.status_code == 422
    assert reply.json()["message"] == "The request body must be a JSON object."


def test_unknown_machine_and_route_are_404(sim: SimServer) -> None:
    assert sim.admin("POST", "/machines/99/block").status_code == 404
    assert sim.admin("GET", "/deposits/99/image").status_code == 404
    assert sim.admin("GET", "/nothing-here").status_code == 404


def test_policy_patch_changes_only_what_is_given(sim: SimServer, machine: dict[str, Any]) -> None:
    updated = sim.admin_ok("PATCH", f"/machines/{machine['id']}/policy", json={"camera_idle_timeout_sec": 5})
    assert updated["camera_idle_timeout_sec"] == 5
    assert updated["bin_full_threshold_percent"] == 90 and updated["is_maintenance_mode"] is False


def test_ai_model_hash_can_be_cleared(sim: SimServer, machine: dict[str, Any]) -> None:
    path = f"/machines/{machine['id']}/ai-model"
    sim.admin_ok("PUT", path, json={"target_version": "v2", "hash": "ab" * 32})
    cleared = sim.admin_ok("PUT", path, json={"target_version": "v3"})
    assert (cleared["ai_target_version"], cleared["ai_hash"]) == ("v3", None)


def test_reset_forgets_everything(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    key = machine["api_key"]
    sim.edge("handshake", key, json_body={"hardware_id": "j", "name": "n"})
    sim.edge("heartbeat", key, json_body={})
    sim.edge("deposit", key, files=deposit_form())
    sim.edge(
        "sync-offline",
        key,
        json_body={
            "transactions": [{"timestamp": "t", "items": [{"type": "can", "weight": 1, "points": 1}]}]
        },
    )
    sim.admin_ok("PUT", "/faults", json={"latency_ms": 5})
    for path in READ_BACK_PATHS:
        assert len(sim.admin_ok("GET", path)) >= 1, path
    assert sim.admin_ok("POST", "/reset", json={"keep_machines": True}) == {
        "status": "ok",
        "kept_machines": True,
    }
    for path in READ_BACK_PATHS:
        assert sim.admin_ok("GET", path) == [], path
    assert sim.admin_ok("GET", "/faults")["faults"]["latency_ms"] == 0
    assert sim.edge("heartbeat", key, json_body={}).status_code == 200
    sim.admin_ok("POST", "/reset")
    assert sim.admin_ok("GET", "/machines") == []
    assert sim.edge("heartbeat", key, json_body={}).json()["error_code"] == "INVALID_API_KEY"
    assert sim.create_machine()["id"] == 1
