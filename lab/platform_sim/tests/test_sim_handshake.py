"""POST /edge/handshake: the reply's exact shape, Laravel 422s, and what the platform records."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SimServer

FULL_HANDSHAKE = {
    "hardware_id": "jetson-0001",
    "name": "rvm-lab-1",
    "ip_local": "192.168.1.20",
    "ip_vpn": "10.147.17.5",
    "timezone": "Asia/Jakarta",
    "system": {
        "jetpack_version": "6.2",
        "firmware_version": "36.4.3",
        "python_version": "3.10.12",
        "ai_models": {"model_name": "yolo11n-rvm", "model_version": "1.0.0", "hash": "ab" * 32},
    },
    "firmware_version": "36.4.3",
    "controller_type": "jetson-orin-nano",
    "ai_model_version": "1.0.0",
    "health_metrics": {
        "cpu_usage_percent": 12.5,
        "memory_usage_percent": 40,
        "disk_usage_percent": 55.1,
        "cpu_temperature": 48.2,
    },
    "hardware_info": {"cameras": [{"id": 0}], "sensors": [], "actuators": [], "microcontroller": []},
    "diagnostics": {"boot": "ok"},
}


def test_handshake_reply_has_the_platform_shape(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.edge("handshake", machine["api_key"], json_body=FULL_HANDSHAKE)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "success"
    assert body["message"] == "Handshake successful. Configuration synced."
    data = body["data"]
    assert set(data) == {"identity", "kiosk", "websocket", "policy", "ai_model"}
    assert data["identity"] == {
        "rvm_id": machine["id"],
        "rvm_uuid": machine["uuid"],
        "rvm_name": "RVM Mall A",
    }
    assert len(data["identity"]["rvm_uuid"]) == 36
    assert set(data["kiosk"]) == {"url", "timezone"} and data["kiosk"]["timezone"] == "Asia/Jakarta"
    assert "signature=" in data["kiosk"]["url"]
    ws = data["websocket"]
    assert set(ws) == {"channel", "auth_token", "host", "port", "scheme"}
    assert ws["channel"] == f"rvm.{machine['uuid']}"
    assert isinstance(ws["port"], int)
    assert data["policy"] == {
        "is_maintenance_mode": False,
        "bin_full_threshold_percent": 90,
        "camera_idle_timeout_sec": 60,
        "motor_speed_delay": 0.005,
    }
    assert data["ai_model"] == {"target_version": "v1.0.0", "hash": None, "update_source_url": None}


def test_handshake_is_recorded_and_updates_the_machine(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.edge("handshake", machine["api_key"], json_body=FULL_HANDSHAKE)
    [record] = sim.admin_ok("GET", "/handshakes")
    assert record["machine_id"] == machine["id"]
    assert record["body"] == FULL_HANDSHAKE
    after = sim.admin_ok("GET", f"/machines/{machine['id']}")
    assert (after["hardware_id"], after["ip_local"], after["ip_vpn"]) == (
        "jetson-0001",
        "192.168.1.20",
        "10.147.17.5",
    )
    assert after["last_handshake_at"] is not None


def test_minimal_handshake_is_enough(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.edge("handshake", machine["api_key"], json_body={"hardware_id": "j1", "name": "n"})
    assert reply.status_code == 200


def test_missing_required_fields_give_laravel_422(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.edge("handshake", machine["api_key"], json_body={})
    assert reply.status_code == 422
    assert reply.json() == {
        "message": "The hardware id field is required. (and 1 more error)",
        "errors": {
            "hardware_id": ["The hardware id field is required."],
            "name": ["The name field is required."],
        },
    }
    assert sim.admin_ok("GET", "/handshakes") == []


def test_a_body_that_is_not_json_reads_as_no_fields(sim: SimServer, machine: dict[str, Any]) -> None:
    headers = {"X-RVM-API-KEY": machine["api_key"], "Content-Type": "application/json"}
    reply = sim.http.post(sim.edge_url("handshake"), data=b"<html>", headers=headers, timeout=10)
    assert reply.status_code == 422
    assert set(reply.json()["errors"]) == {"hardware_id", "name"}


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        (
            "hardware_id",
            "h" * 101,
            "hardware_id",
            "The hardware id field must not be greater than 100 characters.",
        ),
        ("hardware_id", 17, "hardware_id", "The hardware id field must be a string."),
        ("name", "n" * 256, "name", "The name field must not be greater than 255 characters."),
        ("ip_local", "192.168.1", "ip_local", "The ip local field must be a valid IP address."),
        ("ip_vpn", "zt0", "ip_vpn", "The ip vpn field must be a valid IP address."),
        ("timezone", "t" * 51, "timezone", "The timezone field must not be greater than 50 characters."),
        ("system", "jetson", "system", "The system field must be an array."),
        (
            "system",
            {"jetpack_version": "6" * 51},
            "system.jetpack_version",
            "The system.jetpack version field must not be greater than 50 characters.",
        ),
        (
            "system",
            {"ai_models": {"hash": "h" * 101}},
            "system.ai_models.hash",
            "The system.ai models.hash field must not be greater than 100 characters.",
        ),
        (
            "health_metrics",
            {"cpu_usage_percent": 101},
            "health_metrics.cpu_usage_percent",
            "The health metrics.cpu usage percent field must not be greater than 100.",
        ),
        (
            "health_metrics",
            {"disk_usage_percent": -3},
            "health_metrics.disk_usage_percent",
            "The health metrics.disk usage percent field must be at least 0.",
        ),
        (
            "health_metrics",
            {"cpu_temperature": "hot"},
            "health_metrics.cpu_temperature",
            "The health metrics.cpu temperature field must be a number.",
        ),
        (
            "hardware_info",
            {"cameras": "csi0"},
            "hardware_info.cameras",
            "The hardware info.cameras field must be an array.",
        ),
        ("diagnostics", 5, "diagnostics", "The diagnostics field must be an array."),
        ("controller_type", 5, "controller_type", "The controller type field must be a string."),
    ],
)
def test_each_rule_has_its_laravel_message(
    sim: SimServer, machine: dict[str, Any], field: str, value: Any, path: str, message: str
) -> None:
    body = {"hardware_id": "jetson-0001", "name": "rvm-lab-1", field: value}
    reply = sim.edge("handshake", machine["api_key"], json_body=body)
    assert reply.status_code == 422
    assert reply.json()["errors"] == {path: [message]}
    assert reply.json()["message"] == message


def test_policy_and_target_model_set_by_admin_reach_the_device(
    sim: SimServer, machine: dict[str, Any]
) -> None:
    mid = machine["id"]
    sim.admin_ok(
        "PATCH",
        f"/machines/{mid}/policy",
        json={"is_maintenance_mode": True, "bin_full_threshold_percent": 80},
    )
    digest = "0123456789abcdef" * 4
    sim.admin_ok(
        "PUT",
        f"/machines/{mid}/ai-model",
        json={
            "target_version": "v2.1.0",
            "hash": digest,
            "update_source_url": "http://models.lab/v2.1.0.onnx",
        },
    )
    data = sim.edge("handshake", machine["api_key"], json_body=FULL_HANDSHAKE).json()["data"]
    assert data["policy"]["is_maintenance_mode"] is True
    assert data["policy"]["bin_full_threshold_percent"] == 80
    assert data["ai_model"] == {
        "target_version": "v2.1.0",
        "hash": digest,
        "update_source_url": "http://models.lab/v2.1.0.onnx",
    }


def test_wrong_method_and_unknown_route_are_laravel_json(sim: SimServer) -> None:
    wrong = sim.http.get(sim.edge_url("handshake"), timeout=10)
    assert wrong.status_code == 405
    assert re.match(
        r"The GET method is not supported for route api/v1/edge/handshake\.", wrong.json()["message"]
    )
    missing = sim.http.post(sim.edge_url("nope"), json={}, timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"message": "The route api/v1/edge/nope could not be found."}
