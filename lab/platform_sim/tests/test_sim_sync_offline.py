"""POST /edge/sync-offline: "Invalid format", required fields, and one transaction per batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import SimServer


def _batch(n: int) -> dict[str, Any]:
    return {
        "transactions": [
            {
                "timestamp": f"2026-11-29T10:{i:02d}:00+07:00",
                "items": [
                    {"type": "plastic", "weight": 0.025, "points": 10},
                    {"type": "can", "weight": 0.015, "points": 5},
                ],
            }
            for i in range(n)
        ]
    }


def test_batch_is_stored_and_counted(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.edge("sync-offline", machine["api_key"], json_body=_batch(3))
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "success",
        "message": "Synced 3 offline transactions",
        "synced_count": 3,
    }
    stored = sim.admin_ok("GET", "/offline-transactions")
    assert [t["timestamp"] for t in stored] == [f"2026-11-29T10:{i:02d}:00+07:00" for i in range(3)]
    assert stored[0]["items"] == _batch(1)["transactions"][0]["items"]
    [batch] = sim.admin_ok("GET", "/offline-batches")
    assert batch["count"] == 3 and {t["batch_id"] for t in stored} == {batch["id"]}


def test_empty_batch_syncs_zero(sim: SimServer, machine: dict[str, Any]) -> None:
    reply = sim.edge("sync-offline", machine["api_key"], json_body={"transactions": []})
    assert reply.json() == {
        "status": "success",
        "message": "Synced 0 offline transactions",
        "synced_count": 0,
    }


@pytest.mark.parametrize(
    "body", [{}, {"transactions": "[]"}, {"transactions": 3}, {"transactions": None}, []]
)
def test_transactions_not_an_array_is_invalid_format(
    sim: SimServer, machine: dict[str, Any], body: Any
) -> None:
    reply = sim.edge("sync-offline", machine["api_key"], json_body=body)
    assert reply.status_code == 422
    assert reply.json() == {"status": "error", "message": "Invalid format"}


@pytest.mark.parametrize(
    ("transaction", "errors"),
    [
        (
            {"items": [{"type": "can", "weight": 1, "points": 1}]},
            {"transactions.0.timestamp": ["The transactions.0.timestamp field is required."]},
        ),
        (
            {"timestamp": "2026-11-29T10:00:00Z", "items": [{"weight": 1}]},
            {
                "transactions.0.items.0.type": ["The transactions.0.items.0.type field is required."],
                "transactions.0.items.0.points": ["The transactions.0.items.0.points field is required."],
            },
        ),
        (
            {"timestamp": "2026-11-29T10:00:00Z", "items": "can"},
            {"transactions.0.items": ["The transactions.0.items field must be an array."]},
        ),
    ],
)
def test_required_fields_are_laravel_422(
    sim: SimServer, machine: dict[str, Any], transaction: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    reply = sim.edge("sync-offline", machine["api_key"], json_body={"transactions": [transaction]})
    assert reply.status_code == 422
    assert reply.json()["errors"] == errors
    assert sim.admin_ok("GET", "/offline-transactions") == []


def test_failure_midway_stores_nothing(sim: SimServer, machine: dict[str, Any]) -> None:
    sim.admin_ok("PUT", "/faults", json={"sync_fail_after": 2})
    reply = sim.edge("sync-offline", machine["api_key"], json_body=_batch(5))
    assert reply.status_code == 500
    body = reply.json()
    assert body["status"] == "error" and body["message"].startswith("Sync failed")
    assert sim.admin_ok("GET", "/offline-transactions") == []
    assert sim.admin_ok("GET", "/offline-batches") == []
    sim.admin_ok("DELETE", "/faults")
    assert sim.edge("sync-offline", machine["api_key"], json_body=_batch(5)).json()["synced_count"] == 5
    assert len(sim.admin_ok("GET", "/offline-transactions")) == 5
