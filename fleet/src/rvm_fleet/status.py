"""`rvm-fleet status`: one row per device, from Prometheus when one answers, else from the devices.

Prometheus is asked first (RVM_FLEET_PROMETHEUS_URL or --prometheus) because it costs one HTTP round
trip per column for the whole fleet; the fallback is one ad-hoc ansible-runner call of the
read-only probe.py on every device.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ansible_runner

from rvm_fleet.project import Project, ansible
from rvm_fleet.prometheus import PrometheusClient, PrometheusError

EXTRA_QUERIES = {
    "deposits_1h": "sum by (device) (increase(rvm_edge_deposits_recorded_total[1h]))",
    "temperature_c": "max by (device) (rvm_tegra_thermal_zone_temp_celsius)",
}


@dataclass
class Row:
    device: str
    reachable: bool
    version: str = ""
    ready: bool = False
    deposits: float | None = None  # Prometheus: deposits in the last hour; device: total recorded
    outbox_depth: float | None = None
    temperature_c: float | None = None
    backup_age_s: float | None = None
    source: str = ""


def from_prometheus(url: str, devices: list[str], timeout_s: float = 1.5) -> list[Row]:
    client = PrometheusClient(url, timeout_s=timeout_s)
    by_device = {s.device: s for s in client.device_status()}
    extra: dict[str, dict[str, float]] = {}
    for column, expr in EXTRA_QUERIES.items():
        extra[column] = {
            s.labels.get("device", ""): s.value for s in client.query(expr) if not math.isnan(s.value)
        }
    rows = []
    for device in devices:
        s = by_device.get(device)
        rows.append(
            Row(
                device,
                reachable=bool(s and s.up),
                version=s.version if s else "",
                ready=bool(s and s.ready),
                deposits=extra["deposits_1h"].get(device),
                outbox_depth=s.outbox_depth if s else None,
                temperature_c=extra["temperature_c"].get(device),
                backup_age_s=s.backup_age_s if s else None,
                source="prometheus",
            )
        )
    return rows


def from_devices(project: Project, devices: list[str]) -> list[Row]:
    probe = Path(__file__).with_name("probe.py")
    (project.cache / "adhoc").mkdir(parents=True, exist_ok=True)
    result = ansible_runner.run(
        private_data_dir=str(project.cache / "adhoc"),
        project_dir=str(project.root),
        inventory=str(project.inventory),
        host_pattern=",".join(devices),
        module="ansible.builtin.script",
        module_args=f"{probe} executable=python3",
        envvars=project.env(),
        quiet=True,
        rotate_artifacts=5,
    )
    rows = {d: Row(d, reachable=False, source="device") for d in devices}
    for event in result.events:
        data = event.get("event_data") or {}
        host = data.get("host")
        if host not in rows:
            continue
        if event.get("event") == "runner_on_ok":
            got: dict[str, Any] = json.loads((data.get("res") or {}).get("stdout", "") or "{}")
            rows[host] = Row(
                host,
                reachable=True,
                version=got.get("version", ""),
                ready=bool(got.get("ready")),
                deposits=got.get("deposits_total"),
                outbox_depth=got.get("outbox_depth"),
                temperature_c=got.get("temperature_c"),
                backup_age_s=got.get("backup_age_s"),
                source="device",
            )
    return list(rows.values())


PROMETHEUS_URL = (
    "http://{{ rvm_mgmt_address | default(ansible_host) | default(inventory_hostname) }}"
    ":{{ monitoring_server_prometheus_port | default(9090) }}"
)


DISCOVERY_TTL_S = 3600


def discover_prometheus(project: Project, refresh: bool = False) -> str | None:
    """The inventory's Prometheus URL, remembered for an hour per inventory (``refresh``: ask again).

    Asking ansible costs ~1.2 s (the host's vars, vault included), more than the whole status
    budget leaves; --prometheus or RVM_FLEET_PROMETHEUS_URL skip it.
    """
    cache = project.cache / "prometheus-url.json"
    try:
        known = json.loads(cache.read_text())
        fresh = time.time() - known["at"] < DISCOVERY_TTL_S
        if not refresh and known["inventory"] == str(project.inventory) and fresh:
            return known["url"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    url = _ask_inventory(project)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"inventory": str(project.inventory), "url": url, "at": time.time()}))
    return url


def _ask_inventory(project: Project) -> str | None:
    """The URL of the inventory's first monitoring server (group monitoring_servers), if any."""
    proc = ansible(
        project,
        "monitoring_servers",
        *("-m", "ansible.builtin.debug", "-a", f"msg={PROMETHEUS_URL}"),
        env={"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
    )
    start = proc.stdout.find("\n{")  # other enabled callbacks (profile_tasks) print around it
    try:
        doc, _ = json.JSONDecoder().raw_decode(proc.stdout, start + 1 if start >= 0 else 0)
        hosts = doc["plays"][0]["tasks"][0]["hosts"]
    except (ValueError, KeyError, IndexError):
        return None
    urls = sorted((h, r.get("msg")) for h, r in hosts.items() if isinstance(r.get("msg"), str))
    return urls[0][1] if urls else None


def collect(
    project: Project,
    devices: list[str],
    prometheus_url: str | None,
    rediscover: Callable[[], str | None] | None = None,
) -> list[Row]:
    """Prometheus when it answers; a remembered URL that no longer does (the monitoring server moved,
    a lab built anew) is asked for again once; else the devices themselves."""
    tried = set()
    while prometheus_url and prometheus_url not in tried:
        tried.add(prometheus_url)
        try:
            return from_prometheus(prometheus_url, devices)
        except PrometheusError:
            prometheus_url = rediscover() if rediscover else None
    return from_devices(project, devices)


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "age":
        return f"{v / 60:.0f} min" if v >= 60 else f"{v:.0f} s"
    return f"{v:.0f}{unit}"


def table(rows: list[Row]) -> list[list[str]]:
    head = ["DEVICE", "REACHABLE", "VERSION", "READY", "DEPOSITS", "OUTBOX", "TEMP", "LAST BACKUP", "SOURCE"]
    body = [
        [
            r.device,
            "yes" if r.reachable else "NO",
            r.version or "-",
            "yes" if r.ready else "NO",
            _fmt(r.deposits),
            _fmt(r.outbox_depth),
            _fmt(r.temperature_c, " C"),
            _fmt(r.backup_age_s, "age") + (" ago" if r.backup_age_s is not None else ""),
            r.source,
        ]
        for r in rows
    ]
    return [head, *body]


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
