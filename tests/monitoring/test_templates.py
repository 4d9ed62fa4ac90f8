"""The monitoring server's config templates, rendered by Ansible for a small inventory and checked
by promtool and amtool: targets and labels come from the inventory, and a host with no facts (a
device that is down) still gets a target instead of failing the render."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring_server"
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "monitoring_servers.yml"

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

PLAYBOOK = f"""
- hosts: mon
  connection: local
  gather_facts: false
  vars_files:
    - {ROLE}/defaults/main.yml
    - {ROLE}/vars/main.yml
    - {LAB_VARS}
  vars:
    role_path: {ROLE}
  tasks:
    - ansible.builtin.template:
        src: "{{{{ role_path }}}}/templates/{{{{ item }}}}.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0600"
      loop: [prometheus.yml, alertmanager.yml, rvm_settings.yml, rvm_extra.yml]
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    (tmp / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    (tmp / "play.yml").write_text(PLAYBOOK)
    (tmp / "ansible.cfg").write_text("[defaults]\nfact_caching = memory\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp / "inventory.yml"),
            str(tmp / "play.yml"),
            "-e",
            json.dumps(
                {
                    "out": str(tmp),
                    "ansible_python_interpreter": sys.executable,
                    "monitoring_server_bind": "127.0.0.1",
                }
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
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
