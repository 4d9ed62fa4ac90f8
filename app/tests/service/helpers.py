"""Helpers for the service tests: a config writer, a running ``rvm-edge run`` subprocess with ways
to watch it (log events, sd_notify messages, HTTP), and read-back of what was delivered."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import requests
import yaml
from onnx import TensorProto, helper, numpy_helper

from rvm_edge.manifest import load_manifest, sha256_file, write_manifest

API_KEY = "rvm_" + "K" * 12 + "secretkeyvalue00abcd"  # rvm_ + 32 characters, easy to grep for
DASH_TOKEN = "dash-token-0123456789abcdef"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        threading.Event().wait(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def slow_down_detector(manifest_path: Path, iterations: int, dim: int = 256) -> Path:
    """Make the manifest's detector slow to run, like a big model on a small CPU: every inference
    also runs ``iterations`` (dim x dim) matrix products whose result is multiplied by 0, so the
    detections stay those of the original model. The service's warm-up then takes as long as that
    work does (the products feed from the input image, so nothing is folded at load time).
    The manifest's sha256 is rewritten to the new file."""
    manifest = load_manifest(manifest_path)
    entry = manifest.by_role("detector")
    path = manifest.file_path(entry)
    model = onnx.load(str(path))
    graph = model.graph
    output = graph.output[0].name
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = "unslowed_output"
    f = TensorProto.FLOAT
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "work_w"], ["product"]),
            helper.make_node("Tanh", ["product"], ["acc_out"]),  # bounded: no inf/NaN after many steps
        ],
        "work_step",
        [
            helper.make_tensor_value_info("step", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", f, [dim, dim]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", f, [dim, dim]),
        ],
    )
    weights = np.random.default_rng(0).standard_normal((dim, dim)) / dim**0.5
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(iterations, np.int64), "work_trips"),
            numpy_helper.from_array(np.array(True), "work_cond"),
            numpy_helper.from_array(weights.astype(np.float32), "work_w"),
            numpy_helper.from_array(np.array(0.0, np.float32), "work_zero"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("ReduceMean", [graph.input[0].name], ["work_seed"], keepdims=0),
            helper.make_node("Add", ["work_w", "work_seed"], ["work_init"]),
            helper.make_node("Loop", ["work_trips", "work_cond", "work_init"], ["work_done"], body=body),
            helper.make_node("ReduceMean", ["work_done"], ["work_mean"], keepdims=0),
            helper.make_node("Mul", ["work_mean", "work_zero"], ["work_nothing"]),
            helper.make_node("Add", ["unslowed_output", "work_nothing"], [output]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    entries = tuple(replace(e, sha256=sha256_file(path)) if e is entry else e for e in manifest.models)
    write_manifest(manifest_path, replace(manifest, models=entries))
    return manifest_path


def write_config(
    tmp_path: Path, manifest: Path, base_url: str | None, frames: Path | None = None, **sections: Any
) -> Path:
    """config.yml + a credentials directory (api-key, api-token) under ``tmp_path``."""
    creds = tmp_path / "creds"
    creds.mkdir(exist_ok=True)
    (creds / "api-key").write_text(API_KEY + "\n")
    (creds / "api-token").write_text(DASH_TOKEN + "\n")
    cfg: dict[str, Any] = {
        "profile": "staging",
        "device": {"id": "jetson-lab-01", "name": "RVM Lab 1", "zerotier_address": "10.147.17.5"},
        "source": {"kind": "folder", "path": str(frames), "loop": True, "fps": 20},
        "models": {"manifest": str(manifest), "segmentation": {"enabled": False}},
        "platform": {
            "base_url": base_url,
            "allow_insecure_http": True,
            "heartbeat_interval_s": 1,
            "timeout_s": 2,
            "connect_timeout_s": 1,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.3,
            "breaker_failures": 3,
            "breaker_reset_s": 0.3,
        },
        "storage": {"data_dir": str(tmp_path / "data")},
        "server": {"bind": "127.0.0.1", "port": 0},
        "logging": {"level": "INFO", "audit_file": str(tmp_path / "audit.log")},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **values}
        else:
            cfg[name] = values
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclass
class ServiceProcess:
    """A running ``rvm-edge run``: its log events, sd_notify messages and HTTP port."""

    process: subprocess.Popen[str]
    config: Path
    notify: socket.socket
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    lines: list[str] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, token: str | None = None, timeout: float = 5) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.url(path), headers=headers, timeout=timeout)

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no matching log event within {timeout}s; last lines: {self.lines[-5:]}"
                )
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(e):
                return e

    def wait_notify(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.notifications:
                if text in n:
                    return n
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.notifications.append(self.notify.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no sd_notify message with {text!r}; got {self.notifications}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        return self.process.wait(timeout)

    def ready_body(self) -> dict[str, Any]:
        return self.get("/readyz").json()


def start_service(tmp_path: Path, config: Path, extra_env: dict[str, str] | None = None) -> ServiceProcess:
    sock_path = tmp_path / f"notify-{time.monotonic_ns()}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    env = {
        **os.environ,
        "CREDENTIALS_DIRECTORY": str(tmp_path / "creds"),
        "NOTIFY_SOCKET": str(sock_path),
        "WATCHDOG_USEC": "2000000",
        "ORT_DISABLE_TELEMETRY": "1",
        **(extra_env or {}),
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvm_edge.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    svc = ServiceProcess(proc, config, notify)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            svc.lines.append(line)
            try:
                svc.events.put(json.loads(line))
            except ValueError:
                svc.events.put({"event": "non-json", "line": line})

    threading.Thread(target=pump, daemon=True).start()
    listening = svc.wait_event(lambda e: e.get("event") in ("http server listening", "cannot start"), 30)
    if listening["event"] == "cannot start":
        raise AssertionError(f"service did not start: {listening}")
    svc.port = int(listening["port"])
    return svc


def deposit_ids(sim: Any) -> list[str]:
    return [d["deposit_id"] for d in sim.admin("GET", "/deposits")]


def local_ids(data_dir: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(str(data_dir / "rvm-edge.sqlite3"))
    try:
        return [r[0] for r in conn.execute("SELECT deposit_id FROM deposits ORDER BY seq")]
    finally:
        conn.close()


def collapse_repeats(ids: list[str]) -> tuple[list[str], int]:
    """Consecutive repeats removed (a resend after a lost reply lands right after the original)."""
    out: list[str] = []
    repeats = 0
    for i in ids:
        if out and out[-1] == i:
            repeats += 1
        else:
            out.append(i)
    return out, repeats
