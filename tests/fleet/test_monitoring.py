"""Monitoring end to end on the shared lab converge: rvm-monitor runs the real Prometheus and
Alertmanager, and the lab's alert receiver on it (webhook, SMTP, Telegram stand-in) records every
notification. Latencies and memory are figures (FIGURES, JSON at the end), not assertions; the
polls below only bound how long a test waits.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fleet_helpers import FIGURES, ROOT, Recap, devices, readyz, sh

from prodtest.lab import backup_running

MONITOR = "rvm-monitor"
DASHBOARDS = ROOT / "roles" / "monitoring_server" / "files" / "grafana" / "dashboards"
TEXTFILE = "/var/lib/prometheus/node-exporter/rvm_backup.prom"
# Panels whose series need hardware the lab containers lack (thermal zones of a Jetson).
NEEDS_HARDWARE = {"Temperatures"}


def address(container: str) -> str:
    proc = sh(
        ["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container]
    )
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def monitor(fleet: Recap) -> str:
    return address(MONITOR)


def get(url: str, **params: Any) -> Any:
    """GET from inside rvm-monitor: the host firewall (issue 18) admits its ports only from the
    control and management networks, and the lab receiver only from the host itself."""
    query = urlencode(params)
    proc = sh(
        ["podman", "exec", MONITOR, "curl", "-sS", "--max-time", "10", f"{url}?{query}" if query else url]
    )
    assert proc.returncode == 0, (url, proc.stderr)
    return json.loads(proc.stdout)


def prom(monitor: str, expr: str, path: str = "query", **params: Any) -> list[dict]:
    body = get(f"http://{monitor}:9090/api/v1/{path}", query=expr, **params)
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def notifications(monitor: str, since: float) -> list[dict]:
    """Every notification since `since` as (channel, status, alertname, labels) records."""
    out = []
    for rec in get("http://127.0.0.1:9095/records", since=since):
        if rec["channel"] == "webhook":
            for alert in rec["payload"]["alerts"]:
                out.append({**rec, "status": alert["status"], "labels": alert["labels"], "hook": rec["hook"]})
        else:
            out.append(rec)
    return out


def wait_for(what: str, check: Any, timeout_s: float, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(every_s)


def webhook(
    monitor: str, since: float, alertname: str, status: str, hook: str = "chat", **labels: str
) -> list[dict]:
    return [
        n
        for n in notifications(monitor, since)
        if n["channel"] == "webhook"
        and n["hook"] == hook
        and n["status"] == status
        and n["labels"].get("alertname") == alertname
        and all(n["labels"].get(k) == v for k, v in labels.items())
    ]


def test_prometheus_scrapes_every_device_with_its_inventory_labels(monitor: str) -> None:
    def all_up() -> list[dict] | None:
        up = prom(monitor, 'up{job="rvm_edge"}')
        return up if sorted(s["metric"]["device"] for s in up if s["value"][1] == "1") == devices() else None

    up = wait_for("rvm_edge target up on every device", all_up, 60)
    for s in up:
        assert (
            s["metric"]["site"] == "lab" and s["metric"]["group"] == "rvm_devices" and s["metric"]["version"]
        )
    rules = get(f"http://{monitor}:9090/api/v1/rules")["data"]["groups"]
    assert {"rvm_slo", "rvm_availability", "rvm_escalation", "rvm_settings"} <= {g["name"] for g in rules}


def test_rvm_fleet_status_reads_the_lab_prometheus(monitor: str) -> None:
    """`rvm-fleet status` on the lab: one row per device from the monitoring server's Prometheus,
    every device reachable, ready and on a version. Figures: the first call (it asks ansible where
    Prometheus is) and the next (issue 14's budget: <= 2 s)."""
    rvm_fleet = str(Path(sys.executable).parent / "rvm-fleet")

    def status() -> tuple[float, list[dict]]:
        start = time.monotonic()
        proc = sh([rvm_fleet, "status", "--json"])
        assert proc.stdout.strip(), proc.stderr
        return round(time.monotonic() - start, 2), json.loads(proc.stdout)

    first, rows = status()
    assert sorted(r["device"] for r in rows) == devices()
    assert {r["source"] for r in rows} == {"prometheus"}, rows

    def all_ready() -> list[dict] | None:  # an earlier check may have left a device restarting
        rows = status()[1]
        return rows if all(r["reachable"] and r["ready"] and r["version"] for r in rows) else None

    wait_for("every device ready in rvm-fleet status", all_ready, 60, every_s=2)
    seconds = [first, status()[0]]
    FIGURES["rvm_fleet_status_s"] = {"first": seconds[0], "next": seconds[1]}


def test_stopped_rvm_edge_alerts_escalates_and_resolves(monitor: str) -> None:
    """Stop rvm-edge on one device: RvmEdgeDown reaches all three channels, escalates after the lab's
    one minute, and resolves after the restart."""
    device = devices()[1]
    t0 = time.time()
    assert sh(["podman", "exec", device, "systemctl", "stop", "rvm-edge"]).returncode == 0
    try:
        [fired] = wait_for(
            "RvmEdgeDown", lambda: webhook(monitor, t0, "RvmEdgeDown", "firing", device=device)[:1], 120
        )
        FIGURES["alert_latency_s"] = round(fired["received_at"] - t0, 1)
        got = wait_for(
            "RvmEdgeDown on telegram and email",
            lambda: (
                {
                    n["channel"]
                    for n in notifications(monitor, t0)
                    if n["channel"] in ("telegram", "email")
                    and "RvmEdgeDown" in n.get("text", n.get("subject", ""))
                }
                == {"telegram", "email"}
            ),
            60,
        )
        assert got
        [esc] = wait_for(
            "escalation",
            lambda: webhook(
                monitor, t0, "CriticalAlertUnresolved", "firing", hook="escalation", device=device
            )[:1],
            180,
        )
        assert esc["labels"]["escalated_alertname"] in ("RvmEdgeDown", "RvmEdgeNotReady")
        FIGURES["escalation_after_s"] = round(esc["received_at"] - t0, 1)
        wait_for(
            "escalation on the escalation Telegram chat and e-mail address",
            lambda: (
                {
                    (n["channel"], n.get("chat_id") or tuple(n.get("rcpt_to", ())))
                    for n in notifications(monitor, t0)
                    if "CriticalAlertUnresolved" in n.get("text", n.get("subject", ""))
                }
                >= {("telegram", -100002), ("email", ("escalation@rvm.lab",))}
            ),
            60,
        )
    finally:
        t1 = time.time()
        assert sh(["podman", "exec", device, "systemctl", "start", "rvm-edge"]).returncode == 0
    [resolved] = wait_for(
        "resolved RvmEdgeDown",
        lambda: webhook(monitor, t1, "RvmEdgeDown", "resolved", device=device)[:1],
        120,
    )
    FIGURES["resolve_latency_s"] = round(resolved["received_at"] - t1, 1)
    wait_for("rvm-edge ready again", lambda: _ready(device), 90)


def _ready(device: str) -> bool:
    try:
        return bool(readyz(device)["ready"])
    except AssertionError:
        return False


def test_unreachable_device_sends_device_down_and_silences_its_app_alerts(monitor: str) -> None:
    """A frozen device (podman pause: every scrape times out) is DeviceDown; its RvmEdgeDown is
    inhibited and never notified."""
    device = devices()[-1]
    t0 = time.time()
    assert sh(["podman", "pause", device]).returncode == 0
    try:
        [down] = wait_for(
            "DeviceDown", lambda: webhook(monitor, t0, "DeviceDown", "firing", device=device)[:1], 120
        )
        FIGURES["device_down_latency_s"] = round(down["received_at"] - t0, 1)

        def suppressed() -> list[dict]:
            alerts = get(f"http://{monitor}:9093/api/v2/alerts")
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "RvmEdgeDown"
                and a["labels"].get("device") == device
                and a["status"]["state"] == "suppressed"
                and a["status"]["inhibitedBy"]
            ]

        wait_for("RvmEdgeDown inhibited by DeviceDown", suppressed, 60)
        # Absence needs a window: group_wait + group_interval (lab: 15 s) after the inhibition is seen.
        quiet_until = time.monotonic() + 15
        while time.monotonic() < quiet_until:
            assert webhook(monitor, t0, "RvmEdgeDown", "firing", device=device) == []
            time.sleep(1)
    finally:
        t1 = time.time()
        assert sh(["podman", "unpause", device]).returncode == 0
    wait_for(
        "DeviceDown resolved", lambda: webhook(monitor, t1, "DeviceDown", "resolved", device=device), 120
    )
    wait_for("rvm-edge ready again", lambda: _ready(device), 90)


def test_stale_backup_sends_backup_stale(monitor: str) -> None:
    """The backup metrics of one device say the last success was three hours ago: BackupStale.

    The device's hourly rvm-backup timer is held meanwhile: a real run in the window (the lab's
    timers fire at :00 plus up to 15 min) rewrites the file with a fresh success, and the alert
    rightly never fires (a CI run on 2026-12-07 failed on exactly that)."""
    device = devices()[0]
    if not prom(monitor, f'rvm_backup_last_success_timestamp_seconds{{device="{device}"}}'):
        pytest.fail(
            "no rvm_backup_* series from node-exporter's textfile collector (monitoring_agent not converged?)"
        )
    assert sh(["podman", "exec", device, "systemctl", "stop", "rvm-backup.timer"]).returncode == 0
    try:
        wait_for("no rvm-backup run in progress", lambda: not backup_running(device), 600, every_s=2.0)
        original = sh(["podman", "exec", device, "cat", TEXTFILE]).stdout
        stale = (
            "\n".join(
                f"{line.rsplit(' ', 1)[0]} {time.time() - 3 * 3600:.0f}"
                if line.startswith("rvm_backup_last_success_timestamp_seconds")
                else line
                for line in original.splitlines()
            )
            + "\n"
        )
        t0 = time.time()
        _write(device, TEXTFILE, stale)
        try:
            wait_for("BackupStale", lambda: webhook(monitor, t0, "BackupStale", "firing", device=device), 90)
        finally:
            _write(device, TEXTFILE, original)
    finally:
        assert sh(["podman", "exec", device, "systemctl", "start", "rvm-backup.timer"]).returncode == 0


def _write(device: str, path: str, content: str) -> None:
    """Atomically, as rvm-backup does (node-exporter never reads half a file)."""
    script = f"cat > {shlex.quote(path)}.tmp && mv {shlex.quote(path)}.tmp {shlex.quote(path)}"
    proc = subprocess.run(
        ["podman", "exec", "-i", device, "sh", "-c", script],
        input=content,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


BAD_RULE = {
    "monitoring_server_extra_rule_groups": [
        {"name": "bad", "rules": [{"alert": "Bad", "expr": "rate(up[5m"}]}
    ]
}
BAD_ROUTE = {"monitoring_server_extra_routes": [{"matchers": ['severity=~"('], "receiver": "critical"}]}


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        (BAD_RULE, "/etc/prometheus/rules/rvm_extra.yml", "parse error"),
        (BAD_ROUTE, "/etc/prometheus/alertmanager.yml", "FAILED: matcher value"),
    ],
    ids=["rule", "route"],
)
def test_a_config_that_does_not_parse_fails_with_the_tools_message(
    monitor: str, extra: dict, path: str, message: str
) -> None:
    before = sh(["podman", "exec", MONITOR, "sha256sum", path]).stdout
    secret = sh(
        ["podman", "exec", MONITOR, "sh", "-c", "grep -o 'bot_token: .*' /etc/prometheus/alertmanager.yml"]
    ).stdout
    proc = sh(
        [
            "ansible-playbook",
            "playbooks/monitoring.yml",
            "-l",
            MONITOR,
            "--tags",
            "monitoring_server_configure",
            "-e",
            json.dumps(extra),
        ]
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in out, out[-3000:]
    assert sh(["podman", "exec", MONITOR, "sha256sum", path]).stdout == before
    token = secret.split(":", 1)[1].strip().strip('"')
    assert token and token not in out
    assert prom(monitor, "prometheus_config_last_reload_successful")[0]["value"][1] == "1"


def test_every_dashboard_query_parses_and_returns_series(monitor: str) -> None:
    now = time.time()
    empty = []
    for board in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$device", devices()[0])
                series = prom(monitor, expr, "query_range", start=now - 900, end=now, step=15)
                if not series and panel["title"] not in NEEDS_HARDWARE:
                    empty.append(f"{board.name}: {panel['title']}: {expr}")
    assert not empty, empty


def test_monitoring_figures(monitor: str) -> None:
    """Memory of Prometheus and Alertmanager on rvm-monitor, and series per device (figures)."""
    rss = {
        s["metric"]["job"]: float(s["value"][1])
        for s in prom(monitor, 'process_resident_memory_bytes{job=~"prometheus|alertmanager"}')
    }
    FIGURES["prometheus_rss_mib"] = round(rss["prometheus"] / 2**20, 1)
    FIGURES["alertmanager_rss_mib"] = round(rss["alertmanager"] / 2**20, 1)
    per_device = [
        float(s["value"][1])
        for s in prom(monitor, 'count by (device) ({job=~"node|rvm_edge", group="rvm_devices"})')
    ]
    FIGURES["series_per_device"] = round(sum(per_device) / len(per_device), 1)
    FIGURES["series_for_1000_devices"] = round(FIGURES["series_per_device"] * 1000)
    FIGURES["head_series_total"] = float(prom(monitor, "prometheus_tsdb_head_series")[0]["value"][1])
    assert FIGURES["series_per_device"] > 0
