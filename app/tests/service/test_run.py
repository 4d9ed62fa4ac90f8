"""``rvm-edge run`` as systemd runs it: a real subprocess, the simulator as the platform."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from conftest import API_KEY, DASH_TOKEN, deposit_ids, local_ids, start_service, wait_for, write_config


def test_ready_serves_health_and_delivers_then_stops_cleanly(
    tmp_path: Path,
    sim: Any,
    machine: dict[str, Any],
    one_bottle_model: Path,
    frames_dir: Path,
    services: list,
) -> None:
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir)
    svc = start_service(tmp_path, config)
    services.append(svc)
    assert svc.get("/healthz").status_code == 200
    svc.wait_notify("READY=1", 60)
    svc.wait_notify("WATCHDOG=1", 5)
    wait_for(lambda: len(deposit_ids(sim)) >= 5, 30, "5 deposits at the platform")
    ready = wait_for(lambda: svc.get("/readyz").status_code == 200 and svc.ready_body(), 10, "ready")
    assert set(ready) >= {"ready", "checks", "frames_processed", "in_flight", "version"}
    assert ready["checks"]["models_loaded"]["ok"] and ready["frames_processed"] > 0

    dep = sim.admin("GET", "/deposits")[0]
    assert dep["status"] == "ACCEPTED" and dep["image_type"] == "jpeg"
    data = dep["data"]
    assert data["decision"] == "ACCEPTED" and data["material"] == "plastic"
    assert data["model"]["name"] == "fixed" and len(data["model"]["sha256"]) == 64
    assert "e2e_ms" in data["timings_ms"] and "commit_ms" not in data["timings_ms"]
    hb = wait_for(lambda: sim.admin("GET", "/heartbeats"), 10, "a heartbeat")[0]["body"]
    assert hb["hardware_id"] == "jetson-lab-01" and hb["tailscale_ip"] == "10.147.17.5" and hb["version"]
    assert sim.admin("GET", "/handshakes")[0]["body"]["hardware_id"] == "jetson-lab-01"

    metrics = svc.get("/metrics").text
    for name in (
        "rvm_edge_frames_processed_total",
        'rvm_edge_detections_total{class_name="bottle"}',
        'rvm_edge_decisions_total{verdict="ACCEPTED"}',
        'rvm_edge_stage_latency_seconds_bucket{le="0.005",stage="commit"}',
        "rvm_edge_outbox_depth",
        "rvm_edge_outbox_oldest_age_seconds",
        "rvm_edge_heartbeat_age_seconds",
        'rvm_edge_model_info{backend="onnxruntime"',
    ):
        assert name in metrics, name

    assert svc.get("/api/status").status_code == 401
    assert svc.get("/").status_code == 401
    status = svc.get("/api/status", DASH_TOKEN)
    assert status.status_code == 200 and status.json()["platform"]["link"] == "up"
    page = svc.get("/", DASH_TOKEN).text
    assert "<canvas" in page and "http://" not in page and "https://" not in page  # no CDN
    assert svc.get("/api/frame.jpg", DASH_TOKEN).content[:2] == b"\xff\xd8"

    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    svc.wait_notify("STOPPING=1", 1)
    # everything decided was committed and, once the outbox drained, delivered in order
    sent = deposit_ids(sim)
    assert sent == local_ids(tmp_path / "data")[: len(sent)]
    log = "".join(svc.lines) + (tmp_path / "audit.log").read_text()
    assert API_KEY not in log and API_KEY not in status.text
    audit = [yaml.safe_load(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [a["action"] for a in audit][:1] == ["start"] and audit[-1]["action"] == "stop"
    assert audit[-1]["exit_code"] == 0 and audit[-1]["version"]
