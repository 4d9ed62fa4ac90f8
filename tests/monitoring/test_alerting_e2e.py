"""The role's rendered prometheus.yml, rules and alertmanager.yml run by the real Prometheus 2.42 and
Alertmanager 0.25 binaries on loopback, notifying the lab's alert receiver (webhook, SMTP with AUTH,
Telegram stand-in). Stand-in exposition servers play two devices' node-exporter and rvm-edge.

Three devices of one site. One device's rvm-edge stops answering: RvmEdgeDown reaches all three channels, escalates, and
resolves when it answers again. The other device stops answering altogether: DeviceDown arrives
and its RvmEdgeDown is inhibited, never notified. The third stays up (all of
a site down would be one SiteDown instead). Short timings (1 s scrape and evaluation; the
rules' own `for: 15s` stays), so this takes about a minute.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from render_helpers import ROOT, render

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="prometheus / prometheus-alertmanager missing: run lab/host-setup.sh",
)

SRC = ROOT / "lab" / "alert_receiver" / "rvm_alert_receiver.py"
spec = importlib.util.spec_from_file_location("rvm_alert_receiver_e2e", SRC)
assert spec and spec.loader
recv = importlib.util.module_from_spec(spec)
sys.modules["rvm_alert_receiver_e2e"] = recv
spec.loader.exec_module(recv)

SECRET = "e2e-vault-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exposition(BaseHTTPRequestHandler):
    """Answers /metrics with `body` while `up` is set, else 503 (a scrape failure: up == 0)."""

    server: Any

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.server.up.is_set():
            self.send_error(503)
            return
        data = self.server.body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def exposition(body: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    server.body = body  # type: ignore[attr-defined]
    server.up = threading.Event()  # type: ignore[attr-defined]
    server.up.set()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("alerting")
    devices = {
        d: {"node": exposition("node_textfile_scrape_error 0\n"), "edge": exposition("rvm_edge_ready 1\n")}
        for d in ("dev-1", "dev-2", "dev-3")
    }
    ports = {"prom": free_port(), "am": free_port(), "http": free_port(), "smtp": free_port()}
    inventory = {
        "all": {
            "vars": {"rvm_environment": "lab", "vault_lab_secret": SECRET},
            "children": {
                "rvm_devices": {
                    "hosts": {
                        d: {
                            "ansible_host": "127.0.0.1",
                            "rvm_edge_version": "0.1.0",
                            "rvm_edge_server_port": s["edge"].server_address[1],
                            "monitoring_server_node_exporter_port": s["node"].server_address[1],
                        }
                        for d, s in devices.items()
                    }
                },
                "monitoring_servers": {"hosts": {"mon": {"ansible_host": "127.0.0.1"}}},
            },
        }
    }
    receiver = f"http://127.0.0.1:{ports['http']}"
    render(
        tmp,
        inventory,
        {
            "monitoring_server_bind": "127.0.0.1",
            "monitoring_server_prometheus_port": ports["prom"],
            "monitoring_server_alertmanager_port": ports["am"],
            "monitoring_server_node_groups": ["rvm_devices"],
            "monitoring_server_scrape_interval": "1s",
            "monitoring_server_scrape_timeout": "1s",
            "monitoring_server_evaluation_interval": "1s",
            "monitoring_server_group_wait": "1s",
            "monitoring_server_group_interval": "2s",
            "monitoring_server_escalate_after_s": 20,
            "lab_monitoring_receiver_url": receiver,
            "monitoring_server_smtp_smarthost": f"127.0.0.1:{ports['smtp']}",
        },
    )
    rules = tmp / "rules"
    rules.mkdir()
    for f in ("rvm_settings.yml", "rvm_extra.yml"):
        (tmp / f).rename(rules / f)
    for f in (ROOT / "roles" / "monitoring_server" / "files" / "rules").glob("*.yml"):
        shutil.copy(f, rules / f.name)
    config = tmp / "prometheus.yml"
    config.write_text(config.read_text().replace("/etc/prometheus/rules/*.yml", f"{rules}/*.yml"))

    settings_file = tmp / "receiver.json"
    lab_vars = __import__("yaml").safe_load(
        (ROOT / "inventories/lab/group_vars/monitoring_servers.yml").read_text()
    )
    del lab_vars  # the secrets are rendered into alertmanager.yml; read them back from there
    am_config = __import__("yaml").safe_load((tmp / "alertmanager.yml").read_text())
    critical = next(r for r in am_config["receivers"] if r["name"] == "critical")
    settings = {
        "webhook_token": critical["webhook_configs"][0]["http_config"]["authorization"]["credentials"],
        "telegram_bot_token": critical["telegram_configs"][0]["bot_token"],
        "smtp_username": am_config["global"]["smtp_auth_username"],
        "smtp_password": am_config["global"]["smtp_auth_password"],
    }
    settings_file.write_text(__import__("json").dumps(settings))
    recorder = recv.Recorder(tmp / "records.jsonl")
    http = recv.ReceiverHttpServer(("127.0.0.1", ports["http"]), recorder, settings)
    smtp = recv.ReceiverSmtpServer(("127.0.0.1", ports["smtp"]), recorder, settings)
    for server in (http, smtp):
        threading.Thread(target=server.serve_forever, daemon=True).start()

    procs = [
        subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/prom",
                f"--web.listen-address=127.0.0.1:{ports['prom']}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "prometheus.log").open("w"),
        ),
        subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={tmp}/alertmanager.yml",
                f"--storage.path={tmp}/am",
                f"--web.listen-address=127.0.0.1:{ports['am']}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "alertmanager.log").open("w"),
        ),
    ]
    prom = f"http://127.0.0.1:{ports['prom']}"

    def all_up() -> bool:
        try:
            r = requests.get(f"{prom}/api/v1/query", params={"query": "sum(up)"}, timeout=2).json()
            return (
                bool(r["data"]["result"]) and r["data"]["result"][0]["value"][1] == "8"
            )  # 3 devices x (node, rvm_edge) + prometheus + alertmanager
        except requests.RequestException:
            return False

    wait_for("every target up", all_up, 60)
    yield {"devices": devices, "recorder": recorder, "am": f"http://127.0.0.1:{ports['am']}", "tmp": tmp}
    for p in procs:
        p.terminate()
        p.wait(10)
    for server in (http, smtp, *(s for d in devices.values() for s in d.values())):
        server.shutdown()


def alerts_in(recorder: Any, since: float, channel: str, **match: str) -> list[dict]:
    out = []
    for rec in recorder.list(since, channel):
        if channel == "webhook":
            out += [
                {**rec, "status": a["status"], "labels": a["labels"]}
                for a in rec["payload"]["alerts"]
                if all(a["labels"].get(k) == v for k, v in match.items())
            ]
        elif all(v in (rec.get("text") or rec.get("subject") or "") for v in match.values()):
            out.append(rec)
    return out


def webhook_alerts(recorder: Any, since: float, status: str, **match: str) -> list[dict]:
    """The webhook's alerts since `since` in one state (firing or resolved) matching the labels."""
    return [a for a in alerts_in(recorder, since, "webhook", **match) if a["status"] == status]


def test_service_down_reaches_every_channel_escalates_and_resolves_and_device_down_inhibits(
    stack: dict[str, Any],
) -> None:
    rec = stack["recorder"]
    t0 = time.time()
    stack["devices"]["dev-1"]["edge"].up.clear()  # rvm-edge of dev-1 stops answering
    for s in stack["devices"]["dev-2"].values():  # dev-2 is gone altogether
        s.up.clear()

    firing = wait_for(
        "RvmEdgeDown for dev-1 on the webhook",
        lambda: webhook_alerts(rec, t0, "firing", alertname="RvmEdgeDown", device="dev-1"),
        60,
    )
    assert firing[0]["hook"] == "chat"
    wait_for("RvmEdgeDown on Telegram", lambda: alerts_in(rec, t0, "telegram", alertname="RvmEdgeDown"), 30)
    mail = wait_for("RvmEdgeDown by e-mail", lambda: alerts_in(rec, t0, "email", alertname="RvmEdgeDown"), 30)
    assert mail[0]["auth_user"] == "alertmanager" and mail[0]["rcpt_to"] == ["oncall@rvm.lab"]

    wait_for(
        "DeviceDown for dev-2",
        lambda: webhook_alerts(rec, t0, "firing", alertname="DeviceDown", device="dev-2"),
        60,
    )

    def inhibited() -> list[dict]:
        alerts = requests.get(f"{stack['am']}/api/v2/alerts", timeout=5).json()
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "RvmEdgeDown"
            and a["labels"]["device"] == "dev-2"
            and a["status"]["state"] == "suppressed"
            and a["status"]["inhibitedBy"]
        ]

    wait_for("RvmEdgeDown of dev-2 inhibited", inhibited, 30)

    esc = wait_for(
        "escalation of dev-1's RvmEdgeDown",
        lambda: webhook_alerts(
            rec,
            t0,
            "firing",
            alertname="CriticalAlertUnresolved",
            device="dev-1",
            escalated_alertname="RvmEdgeDown",
        ),
        90,
    )
    assert esc[0]["hook"] == "escalation"
    wait_for(
        "escalation on the escalation Telegram chat",
        lambda: [
            r
            for r in rec.list(t0, "telegram")
            if r["chat_id"] == -100002 and "CriticalAlertUnresolved" in r["text"]
        ],
        30,
    )
    # dev-2's escalations of its inhibited alerts are inhibited too; its DeviceDown escalates.
    assert not alerts_in(rec, t0, "webhook", alertname="RvmEdgeDown", device="dev-2")
    assert not alerts_in(
        rec,
        t0,
        "webhook",
        alertname="CriticalAlertUnresolved",
        device="dev-2",
        escalated_alertname="RvmEdgeDown",
    )

    t1 = time.time()
    stack["devices"]["dev-1"]["edge"].up.set()
    for s in stack["devices"]["dev-2"].values():
        s.up.set()
    wait_for(
        "RvmEdgeDown of dev-1 resolved",
        lambda: webhook_alerts(rec, t1, "resolved", alertname="RvmEdgeDown", device="dev-1"),
        60,
    )
    wait_for(
        "DeviceDown of dev-2 resolved",
        lambda: webhook_alerts(rec, t1, "resolved", alertname="DeviceDown", device="dev-2"),
        60,
    )
