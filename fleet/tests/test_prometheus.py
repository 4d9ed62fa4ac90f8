"""rvm_fleet.prometheus against a real Prometheus (Debian's 2.42 binary on the control node) that
scrapes a small exposition server standing in for two devices, with the role's recording rules."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rvm_fleet.prometheus import DeviceStatus, PrometheusClient, PrometheusError, intervals, status_table

RULES = Path(__file__).resolve().parents[2] / "roles" / "monitoring_server" / "files" / "rules"
PROMETHEUS = shutil.which("prometheus")

EXPOSITION = {
    "dev-a": "rvm_edge_ready 1\nrvm_edge_outbox_depth 3\nrvm_edge_outbox_oldest_age_seconds 42\n"
    "rvm_backup_last_success_timestamp_seconds {now}\n",
    "dev-b": "rvm_edge_ready 0\nrvm_edge_outbox_depth 0\nrvm_edge_outbox_oldest_age_seconds 0\n",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exposition(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = EXPOSITION[self.path.strip("/")].format(now=time.time() - 120).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusClient]:
    if PROMETHEUS is None:
        pytest.skip("prometheus missing: run lab/host-setup.sh (Debian package prometheus)")
    tmp = tmp_path_factory.mktemp("prom")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    eport = exporter.server_address[1]
    jobs = "".join(
        f"""
      - targets: ["127.0.0.1:{eport}"]
        labels: {{site: s1, group: rvm_devices, device: {d}, version: "0.1.{i}", __metrics_path__: /{d}}}"""
        for i, d in enumerate(EXPOSITION)
    )
    (tmp / "prometheus.yml").write_text(
        f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{RULES}/rvm_recording.yml", "{tmp}/alerts.yml"]
scrape_configs:
  - job_name: rvm_edge
    static_configs:{jobs}
"""
    )
    (tmp / "alerts.yml").write_text(
        "groups: [{name: t, rules: [{alert: NotReadyNow, expr: rvm_edge_ready == 0, labels: {severity: warning}}]}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp}/prometheus.yml",
            f"--storage.tsdb.path={tmp}/data",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = PrometheusClient(f"http://127.0.0.1:{port}", timeout_s=5)
    deadline = time.monotonic() + 60
    while True:  # until both devices are scraped, the rules recorded and the alert fired
        try:
            if len(client.query("rvm:device_available")) == 2 and client.query('ALERTS{alertstate="firing"}'):
                break
        except PrometheusError:
            pass
        assert time.monotonic() < deadline, "prometheus did not come up with both targets"
        time.sleep(0.5)
    yield client
    proc.terminate()
    proc.wait(10)
    exporter.shutdown()


def test_device_status_has_one_row_per_device_with_its_figures(prom: PrometheusClient) -> None:
    rows = {r.device: r for r in prom.device_status()}
    assert sorted(rows) == ["dev-a", "dev-b"]
    a, b = rows["dev-a"], rows["dev-b"]
    assert (a.site, a.version, a.up, a.ready) == ("s1", "0.1.0", True, True)
    assert (a.outbox_depth, a.outbox_lag_s) == (3, 42)
    assert a.backup_age_s is not None and 110 < a.backup_age_s < 200
    assert a.alerts == []
    assert (b.up, b.ready, b.backup_age_s, b.alerts) == (True, False, None, ["NotReadyNow"])


def test_status_table_shows_a_line_per_device(prom: PrometheusClient) -> None:
    lines = status_table(prom.device_status()).splitlines()
    assert lines[0].split()[:3] == ["SITE", "DEVICE", "VERSION"]
    assert lines[1].split()[:5] == ["s1", "dev-a", "0.1.0", "yes", "yes"]
    assert "NotReadyNow" in lines[2] and lines[2].split()[4] == "NO"


def test_alert_history_lists_the_firing_interval(prom: PrometheusClient) -> None:
    now = time.time()
    history = prom.alert_history(now - 300, now, step_s=1)
    assert [(h.alertname, h.labels["device"]) for h in history] == [("NotReadyNow", "dev-b")]
    assert history[0].end >= history[0].start


def test_a_bad_query_raises_with_prometheus_message(prom: PrometheusClient) -> None:
    with pytest.raises(PrometheusError, match=r"bad_data.*parse error"):
        prom.query("rate(up[")


def test_an_unreachable_server_raises_a_clear_error() -> None:
    with pytest.raises(PrometheusError, match=r"127\.0\.0\.1:1"):
        PrometheusClient("http://127.0.0.1:1", timeout_s=1).query("up")


def test_intervals_split_on_gaps() -> None:
    assert intervals([0, 15, 30, 120, 135], 15) == [(0, 30), (120, 135)]
    assert intervals([], 15) == []


def test_status_table_without_figures_shows_dashes() -> None:
    line = status_table([DeviceStatus("dev-z")]).splitlines()[1]
    assert line.split() == ["dev-z", "-", "NO", "NO", "-", "-", "-", "-", "-"]
