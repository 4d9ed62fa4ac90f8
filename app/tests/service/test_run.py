"""``rvm-edge run`` as systemd runs it: a real subprocess, the simulator as the platform."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.helpers import (
    API_KEY,
    DASH_TOKEN,
    deposit_ids,
    local_ids,
    slow_down_detector,
    start_service,
    wait_for,
    write_config,
)

STOP_WITHIN_S = 15.0  # the service's stop budget; the role's TimeoutStopSec is 20 s


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
    assert set(hb["health_metrics"]) >= {"cpu_usage_percent", "memory_usage_percent", "disk_usage_percent"}
    assert hb["status"] == "online" and "outbox" in hb["discovery"]
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
        'rvm_edge_stage_latency_seconds_count{stage="encode"}',
    ):
        assert name in metrics, name
    # CPU per stage and for the whole process, so the fleet can show CPU per item (issue 17)
    cpu = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("process_cpu_seconds_total", "rvm_edge_stage_cpu_seconds_total"))
    }
    assert cpu["process_cpu_seconds_total"] > 0
    assert 0 < cpu['rvm_edge_stage_cpu_seconds_total{stage="detect"}'] <= cpu["process_cpu_seconds_total"]
    assert 'rvm_edge_stage_cpu_seconds_total{stage="source"}' in cpu

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
    stopped = svc.wait_event(lambda e: e.get("event") == "stopped", 5)
    # the drain: every frame decided before the stop was committed, none left between the two
    assert stopped["recorded"] + stopped["not_recorded"] == stopped["frames_processed"]
    assert stopped["in_flight"] == 0 and stopped["record_failed"] == 0
    assert stopped["recorded"] == len(local_ids(tmp_path / "data"))
    # everything decided was committed and, once the outbox drained, delivered in order
    sent = deposit_ids(sim)
    assert sent == local_ids(tmp_path / "data")[: len(sent)]
    log = "".join(svc.lines) + (tmp_path / "audit.log").read_text()
    assert API_KEY not in log and API_KEY not in status.text
    audit = [yaml.safe_load(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [a["action"] for a in audit][:1] == ["start"] and audit[-1]["action"] == "stop"
    assert audit[-1]["exit_code"] == 0 and audit[-1]["version"]


def test_remote_commands_run_within_a_heartbeat_and_are_audited(
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
    svc.wait_notify("READY=1", 60)
    for action in ("GIT_PULL", "BOGUS", "RESTART"):
        sim.admin("POST", f"/machines/{machine['id']}/commands", {"action": action})
    # heartbeat_interval_s is 1: the RESTART must end the process (exit 75: systemd restarts it)
    assert svc.wait(10) == 75
    events = "".join(svc.lines)
    assert "GIT_PULL is not applicable" in events and "unknown remote command ignored" in events
    audit = [yaml.safe_load(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    commands = [a["command"] for a in audit if a["action"] == "remote_command"]
    assert commands == ["GIT_PULL", "BOGUS", "RESTART"]
    assert audit[-1]["action"] == "stop" and audit[-1]["exit_code"] == 75


def test_blocked_machine_keeps_running_and_queues(
    tmp_path: Path,
    sim: Any,
    machine: dict[str, Any],
    one_bottle_model: Path,
    frames_dir: Path,
    services: list,
) -> None:
    sim.admin("POST", f"/machines/{machine['id']}/block")
    sim.admin("DELETE", f"/machines/{machine['id']}/technician")
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir)
    svc = start_service(tmp_path, config)
    services.append(svc)
    svc.wait_notify("READY=1", 60)
    wait_for(lambda: len(local_ids(tmp_path / "data")) >= 5, 20, "deposits recorded while blocked")
    body = wait_for(
        lambda: (b := svc.ready_body())["checks"].get("platform", {}).get("detail") == "blocked" and b,
        10,
        "readiness shows the block",
    )
    assert body["ready"] is True  # the device itself is healthy: the health gate must not roll it back
    assert deposit_ids(sim) == []
    # unblocked but no technician: heartbeats are refused with 403, the device keeps going
    sim.admin("POST", f"/machines/{machine['id']}/unblock")
    wait_for(lambda: svc.ready_body()["checks"]["platform"]["detail"] == "no_technician", 15, "no technician")
    wait_for(lambda: len(deposit_ids(sim)) >= 5, 20, "queued deposits delivered after the unblock")
    assert svc.process.poll() is None
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0


def test_maintenance_mode_stops_accepting_items(
    tmp_path: Path,
    sim: Any,
    machine: dict[str, Any],
    one_bottle_model: Path,
    frames_dir: Path,
    services: list,
) -> None:
    sim.admin("PATCH", f"/machines/{machine['id']}/policy", {"is_maintenance_mode": True})
    sim.admin("PUT", f"/machines/{machine['id']}/ai-model", {"target_version": "v2", "hash": "c" * 64})
    config = write_config(tmp_path, one_bottle_model, sim.edge_base_url, frames_dir)
    svc = start_service(tmp_path, config)
    services.append(svc)
    svc.wait_notify("READY=1", 60)
    wanted = svc.wait_event(lambda e: e.get("event", "").startswith("platform wants another AI model"), 10)
    assert wanted["target_hash"] == "c" * 64
    wait_for(lambda: svc.get("/api/status", DASH_TOKEN).json()["accepting"] is False, 10, "maintenance seen")
    frames = svc.ready_body()["frames_processed"]
    wait_for(lambda: svc.ready_body()["frames_processed"] > frames + 10, 10, "frames keep flowing")
    recorded = len(local_ids(tmp_path / "data"))
    assert recorded <= 2  # at most what was decided before the handshake reply arrived
    hb = wait_for(lambda: sim.admin("GET", "/heartbeats"), 10, "heartbeat")[-1]["body"]
    assert hb["status"] == "maintenance"
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0


def test_sighup_applies_live_keys_and_keeps_the_old_config_when_invalid(
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
    svc.wait_notify("READY=1", 60)
    good = config.read_text()
    config.write_text(good + "bogus_section: {x: 1}\n")
    svc.signal(signal.SIGHUP)
    refused = svc.wait_event(lambda e: e.get("event", "").startswith("config reload refused"), 10)
    assert "bogus_section: unknown key" in refused["errors"]
    assert svc.get("/healthz").status_code == 200
    cfg = yaml.safe_load(good)
    cfg["decision"] = {"min_confidence": 0.95}  # the bottle's 0.9 is now too little
    cfg["server"]["bind"] = "127.0.0.2"
    config.write_text(yaml.safe_dump(cfg))
    svc.signal(signal.SIGHUP)
    applied = svc.wait_event(lambda e: e.get("action") == "config_reload" and e["result"] == "applied", 10)
    assert "decision.min_confidence" in applied["applied"]
    assert applied["needs_restart"] == ["server.bind"]
    wait_for(
        lambda: (r := svc.get("/api/status", DASH_TOKEN).json()["recent"]) and r[0]["decision"] == "REJECTED",
        10,
        "items rejected under the new threshold",
    )
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"models": {"manifest": "/nonexistent/manifest.json"}}, 3, "model manifest not found"),
        ({"platform": {"api_key_file": "/nonexistent/api-key"}}, 5, "platform.api_key_file"),
        ({"storage": {"data_dir": "/proc/rvm-edge"}}, 4, "storage.data_dir"),
        ({"device": {"id": ""}}, 2, "device.id"),
        ({"logging": {"file": "/proc/no/such/dir/rvm-edge.log"}}, 2, "logging.file"),
        # a second address this host does not have (TEST-NET-1): named, and exit 6
        ({"server": {"bind": ["127.0.0.1", "192.0.2.1"]}}, 6, "server.bind: cannot listen on 192.0.2.1:"),
    ],
)
def test_startup_failures_exit_with_their_documented_code(
    tmp_path: Path, one_bottle_model: Path, frames_dir: Path, change: dict, code: int, message: str
) -> None:
    config = write_config(tmp_path, one_bottle_model, "http://127.0.0.1:9/api/v1", frames_dir)
    cfg = yaml.safe_load(config.read_text())
    for section, values in change.items():
        cfg[section] = {**cfg[section], **values}
    config.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    result = subprocess.run(
        [sys.executable, "-m", "rvm_edge.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stdout
    assert API_KEY not in result.stdout + result.stderr


def test_rotated_key_is_picked_up_after_a_401_and_no_key_is_ever_logged(
    tmp_path: Path,
    sim: Any,
    machine: dict[str, Any],
    one_bottle_model: Path,
    frames_dir: Path,
    services: list,
) -> None:
    config = write_config(
        tmp_path, one_bottle_model, sim.edge_base_url, frames_dir, logging={"level": "DEBUG"}
    )
    svc = start_service(tmp_path, config)
    services.append(svc)
    wait_for(lambda: len(deposit_ids(sim)) >= 2, 30, "deposits with the first key")
    new_key = "rvm_" + "N" * 12 + "rotatedkeyvalue0abcd"
    sim.admin("POST", f"/machines/{machine['id']}/keys", {"api_key": new_key})
    wait_for(lambda: svc.ready_body()["checks"]["platform"]["detail"] == "auth", 15, "the 401 noticed")
    stalled = len(deposit_ids(sim))
    (tmp_path / "creds" / "api-key").write_text(new_key + "\n")
    handshakes = len(sim.admin("GET", "/handshakes"))
    wait_for(
        lambda: len(sim.admin("GET", "/handshakes")) > handshakes, 15, "a new handshake with the new key"
    )
    wait_for(lambda: len(deposit_ids(sim)) > stalled + 3, 20, "deposits flowing again")
    status = svc.get("/api/status", DASH_TOKEN).text
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0
    everything = "".join(svc.lines) + (tmp_path / "audit.log").read_text() + status
    assert '"level": "DEBUG"' in everything  # debug logging was on, and still:
    assert API_KEY not in everything and new_key not in everything
    assert "api_key_changed" in everything


def test_openvino_compiles_into_the_data_dir_cache(
    tmp_path: Path,
    sim: Any,
    machine: dict[str, Any],
    one_bottle_model: Path,
    frames_dir: Path,
    services: list,
) -> None:
    """The unit makes everything but data_dir read-only: the compiled-model cache must live there."""
    config = write_config(
        tmp_path, one_bottle_model, sim.edge_base_url, frames_dir,
        models={"manifest": str(one_bottle_model), "backend": "openvino", "segmentation": {"enabled": False}},
    )  # fmt: skip
    svc = start_service(tmp_path, config, {"HOME": str(tmp_path / "no-home")})
    services.append(svc)
    svc.wait_notify("READY=1", 60)
    assert any((tmp_path / "data" / "cache" / "openvino").iterdir())
    assert not (tmp_path / "no-home").exists()
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0


def test_dev_profile_runs_offline_and_keeps_everything(
    tmp_path: Path, one_bottle_model: Path, frames_dir: Path, services: list
) -> None:
    config = write_config(tmp_path, one_bottle_model, None, frames_dir, profile="dev")
    svc = start_service(tmp_path, config)
    services.append(svc)
    svc.wait_notify("READY=1", 60)
    wait_for(lambda: len(local_ids(tmp_path / "data")) >= 5, 20, "deposits recorded offline")
    body = wait_for(lambda: svc.get("/readyz").status_code == 200 and svc.ready_body(), 10, "ready")
    assert "platform" not in body["checks"]
    assert svc.wait_notify("frames; outbox", 15)  # STATUS= for systemctl status
    svc.signal(signal.SIGTERM)
    assert svc.wait(20) == 0


def test_sigterm_while_the_models_warm_up_stops_cleanly_and_never_reports_ready(
    tmp_path: Path, one_bottle_model: Path, frames_dir: Path, services: list
) -> None:
    """systemd sends SIGTERM whenever it stops the unit, also while the models load (SAM2's encoder
    takes seconds to warm up on a CPU, an OpenVINO compile minutes): the service must exit 0 well
    within TimeoutStopSec (20 s) instead of finishing the warm-up first and being SIGKILLed."""
    # minutes of warm-up on any CPU: only an interrupted load can stop in time
    slow_down_detector(one_bottle_model, iterations=500_000)
    config = write_config(
        tmp_path,
        one_bottle_model,
        None,
        frames_dir,
        profile="dev",
        models={"manifest": str(one_bottle_model), "threads": 1, "segmentation": {"enabled": False}},
    )
    svc = start_service(tmp_path, config)
    services.append(svc)
    svc.wait_notify("STATUS=warming up models", 60)
    assert svc.get("/healthz").status_code == 200 and svc.get("/readyz").status_code == 503
    svc.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert svc.wait(STOP_WITHIN_S) == 0
    assert time.monotonic() - t0 < STOP_WITHIN_S
    stopped = svc.wait_event(lambda e: e.get("event") == "stopped", 5)
    assert stopped["drain_s"] < STOP_WITHIN_S
    output = "".join(svc.lines)
    assert "Traceback" not in output and '"level": "ERROR"' not in output, output
    svc.wait_notify("STOPPING=1", 1)
    assert not any("READY=1" in n for n in svc.notifications)
    audit = [yaml.safe_load(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "stop" and audit[-1]["exit_code"] == 0
    # the data directory's lock went with the process: the restart that follows can take it
    fd = os.open(tmp_path / "data" / "rvm-edge.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
