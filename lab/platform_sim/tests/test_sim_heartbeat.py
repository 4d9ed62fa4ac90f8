"""POST /edge/heartbeat: the no-technician 403, commands handed out once, what is recorded."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import SimServer

HEARTBEAT = {
    "hardware_id": "jetson-0001",
    "status": "online",
    "version": "0.3.1",
    "health_metrics": {"cpu_usage_percent": 20, "memory_usage_percent": 35, "disk_usage_percent": 50},
    "bin_capacity": 42,
    "discovery": {"cameras": ["csi0"]},
    "ip_local": "192.168.1.20",
    "tailscale_ip": "10.147.17.5",
}


def test_accepted_heartbeat_reply(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.edge("heartbeat", machine["api_key"], json_body=HEARTBEAT)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"status", "server_time", "commands"}
    assert body["status"] == "success"
    assert body["commands"] == []
    assert datetime.fromisoformat(body["server_time"]).utcoffset() is not None


def test_heartbeat_is_recorded_and_vpn_address_kept(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.edge("heartbeat", machine["api_key"], json_body=HEARTBEAT)
    [record] = sim.admin_ok("GET", "/heartbeats")
    assert record["accepted"] is True
    assert record["body"] == HEARTBEAT
    after = sim.admin_ok("GET", f"/machines/{machine['id']}")
    assert (after["ip_local"], after["ip_vpn"]) == ("192.168.1.20", "10.147.17.5")
    assert after["last_heartbeat_at"] == record["received_at"]


def test_heartbeat_needs_no_particular_fields(sim: SimServer, machine: dict[str, Any]) -> None:
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).status_code == 200
    assert sim.edge("heartbeat", machine["api_key"], json_body={"bin_capacity": "full"}).status_code == 200


def test_no_technician_is_403_with_the_platform_message(sim: SimServer) -> None:
    machine = sim.create_machine(technician=None)
    assert machine["technician"] is None
    reply = sim.edge("heartbeat", machine["api_key"], json_body=HEARTBEAT)
    assert reply.status_code == 403
    body = reply.json()
    assert body["status"] == "error"
    assert body["message"].startswith("Heartbeat rejected: No active technician assignment")
    assert "error_code" not in body
    [record] = sim.admin_ok("GET", "/heartbeats")
    assert record["accepted"] is False


def test_assigning_and_removing_the_technician(sim: SimServer) -> None:
    machine = sim.create_machine(technician=None)
    mid, key = machine["id"], machine["api_key"]
    assert sim.admin_ok("PUT", f"/machines/{mid}/technician", json={"name": "Budi"})["technician"] == "Budi"
    assert sim.edge("heartbeat", key, json_body={}).status_code == 200
    assert sim.admin_ok("DELETE", f"/machines/{mid}/technician")["technician"] is None
    assert sim.edge("heartbeat", key, json_body={}).status_code == 403


def test_handshake_does_not_need_a_technician(sim: SimServer) -> None:
    machine = sim.create_machine(technician=None)
    reply = sim.edge("handshake", machine["api_key"], json_body={"hardware_id": "j", "name": "n"})
    assert reply.status_code == 200


def test_commands_are_handed_out_once_in_order(sim: SimServer, machine: dict[str, Any]) -> None:
    mid, key = machine["id"], machine["api_key"]
    for action in ("GIT_PULL", "RESTART", "SELF_DESTRUCT"):
        queued = sim.admin_ok("POST", f"/machines/{mid}/commands", json={"action": action})
        assert queued["action"] == action and queued["delivered_at"] is None
    first = sim.edge("heartbeat", key, json_body={}).json()["commands"]
    assert [c["action"] for c in first] == ["GIT_PULL", "RESTART", "SELF_DESTRUCT"]
    assert all(set(c) == {"action", "timestamp"} for c in first)
    assert sim.edge("heartbeat", key, json_body={}).json()["commands"] == []
    log = sim.admin_ok("GET", f"/machines/{mid}/commands")
    [first_beat, _] = sim.admin_ok("GET", "/heartbeats")
    assert {c["heartbeat_id"] for c in log} == {first_beat["id"]}


def test_commands_wait_while_the_heartbeat_is_refused(sim: SimServer) -> None:
    machine = sim.create_machine(technician=None)
    mid, key = machine["id"], machine["api_key"]
    sim.admin_ok("POST", f"/machines/{mid}/commands", json={"action": "RESTART"})
    assert sim.edge("heartbeat", key, json_body={}).status_code == 403
    sim.admin_ok("PUT", f"/machines/{mid}/technician", json={"name": "Budi"})
    assert [c["action"] for c in sim.edge("heartbeat", key, json_body={}).json()["commands"]] == ["RESTART"]


def test_commands_go_only_to_their_machine(sim: SimServer, machine: dict[str, Any]) -> None:
    other = sim.create_machine(name="RVM Mall B")
    sim.admin_ok("POST", f"/machines/{other['id']}/commands", json={"action": "RESTART"})
    assert sim.edge("heartbeat", machine["api_key"], json_body={}).json()["commands"] == []
    assert len(sim.edge("heartbeat", other["api_key"], json_body={}).json()["commands"]) == 1
