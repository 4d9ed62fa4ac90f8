"""The monitoring server's config templates, rendered by Ansible for a small inventory and checked
by promtool and amtool: targets and labels come from the inventory, and a host with no facts (a
device that is down) still gets a target instead of failing the render."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from render_helpers import render

INVENTORY = {
    "all": {
        "vars": {
            "rvm_mgmt_address": "{{ zerotier_mgmt_address | default(ansible_facts['default_ipv4']['address'], true) }}",
            "rvm_environment": "lab",
            "vault_lab_secret": "not-a-real-secret",
        },
        "children": {
            "rvm_devices": {
                "hosts": {
                    "dev-1": {"ansible_host": "10.0.0.1", "rvm_edge_version": "0.1.0", "rvm_site": "north"},
                    "dev-2": {"zerotier_mgmt_address": "172.16.0.2", "rvm_edge_version": "0.2.0"},
                    "dev-3": {},
                }
            },
            "monitoring_servers": {"hosts": {"mon": {}}},
        },
    }
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    render(tmp, INVENTORY, {"monitoring_server_bind": "127.0.0.1"})
    return tmp


def static_configs(rendered: Path, job: str) -> list[dict]:
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    [scrape] = [c for c in config["scrape_configs"] if c["job_name"] == job]
    return scrape["static_configs"]


def test_device_targets_come_from_the_inventory_even_without_facts(rendered: Path) -> None:
    targets = {
        c["labels"]["device"]: (c["targets"], c["labels"]) for c in static_configs(rendered, "rvm_edge")
    }
    assert targets["dev-1"] == (
        ["10.0.0.1:8080"],
        {"site": "north", "group": "rvm_devices", "device": "dev-1", "version": "0.1.0"},
    )
    assert targets["dev-2"] == (
        ["172.16.0.2:8080"],
        {"site": "lab", "group": "rvm_devices", "device": "dev-2", "version": "0.2.0"},
    )
    assert targets["dev-3"][0] == ["dev-3:8080"]  # no address known: the inventory name
    nodes = {c["labels"]["device"]: c["labels"]["group"] for c in static_configs(rendered, "node")}
    assert nodes == {
        "dev-1": "rvm_devices",
        "dev-2": "rvm_devices",
        "dev-3": "rvm_devices",
        "mon": "monitoring_servers",
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: run lab/host-setup.sh")
def test_rendered_prometheus_files_pass_promtool(rendered: Path) -> None:
    config = rendered / "prometheus.yml"
    text = config.read_text().replace("/etc/prometheus/rules/*.yml", f"{rendered}/rvm_*.yml")
    config.write_text(text)
    for args in (
        ["check", "config", str(config)],
        ["check", "rules", str(rendered / "rvm_settings.yml"), str(rendered / "rvm_extra.yml")],
    ):
        proc = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool missing (Debian package prometheus-alertmanager)"
)
def test_rendered_alertmanager_config_passes_amtool_and_routes_by_severity(rendered: Path) -> None:
    path = rendered / "alertmanager.yml"
    proc = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load(path.read_text())
    receivers = {r["name"]: sorted(k for k in r if k.endswith("_configs")) for r in config["receivers"]}
    assert receivers == {
        "critical": ["email_configs", "telegram_configs", "webhook_configs"],
        "warning": ["email_configs", "webhook_configs"],
        "escalation": ["email_configs", "telegram_configs", "webhook_configs"],
    }
    for labels, receiver in (
        ("severity=critical alertname=RvmEdgeDown", "critical"),
        ("severity=warning alertname=BackupStale", "warning"),
        ("severity=escalation alertname=CriticalAlertUnresolved", "escalation"),
    ):
        proc = subprocess.run(
            ["amtool", "config", "routes", "test", "--config.file", str(path), *labels.split()],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.stdout.strip() == receiver, (labels, proc.stdout, proc.stderr)
