"""What an operator checks after monitoring_agent: node-exporter answers on the management address only
and serves the textfile metrics (rvm-tegra-exporter's, fed by the tegrastats stand-in), and the
exporter's unit is hardened. Metrics are fetched from the control node over the lab network."""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

testinfra_hosts = ["podman://rvm-molecule-monitoring-agent"]
ROLE = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
BUILD = ROLE.parent.parent / ".cache" / "agents" / "rvm-tegra-exporter.pyz"


@pytest.fixture(scope="module")
def address(host) -> str:
    return host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'")


def scrape(address: str, deadline_s: float = 30.0, want: str = "") -> str:
    """node-exporter's /metrics, polled until it holds `want` (the exporter writes every second)."""
    end = time.monotonic() + deadline_s
    while True:
        with urllib.request.urlopen(f"http://{address}:9100/metrics", timeout=10) as reply:
            text = reply.read().decode()
        if want in text or time.monotonic() > end:
            return text
        time.sleep(0.5)


def test_node_exporter_is_the_distribution_package_and_runs(host) -> None:
    assert host.package("prometheus-node-exporter").is_installed
    assert host.package("prometheus-node-exporter").version.startswith("1.5.")
    service = host.service("prometheus-node-exporter")
    assert service.is_running and service.is_enabled
    assert not host.package("prometheus-node-exporter-collectors").is_installed


def test_it_listens_on_the_management_address_only(host, address: str) -> None:
    listening = [line.split()[3] for line in host.check_output("ss -Htln 'sport = :9100'").splitlines()]
    assert listening == [f"{address}:9100"]
    assert host.run("python3 -c \"import socket; socket.create_connection(('127.0.0.1', 9100), 2)\"").rc != 0


def test_textfile_metrics_from_the_tegra_exporter_are_served(address: str) -> None:
    text = scrape(address, want='rvm_tegra_rail_power_watts{rail="VDD_IN"}')
    lines = text.splitlines()
    assert 'rvm_tegra_rail_power_watts{rail="VDD_IN"} 4.673' in lines
    assert 'rvm_tegra_rail_power_average_watts{rail="VDD_SOC"} 1.445' in lines
    assert "rvm_tegra_gpu_load_ratio 0.13" in lines
    assert 'rvm_tegra_exporter_collector_error{source="tegrastats"} 0' in lines
    assert "node_textfile_scrape_error 0" in lines
    assert re.search(r'^node_textfile_mtime_seconds\{file="[^"]*/rvm_tegra.prom"\} \S+$', text, re.M)


def test_the_systemd_collector_reports_the_rvm_units(address: str) -> None:
    text = scrape(address)
    assert 'node_systemd_unit_state{name="rvm-tegra-exporter.service",state="active",type="exec"} 1' in text
    assert 'name="systemd-journald.service"' not in text


def test_the_exporter_is_the_zipapp_built_on_the_control_node(host) -> None:
    binary = host.file("/usr/local/sbin/rvm-tegra-exporter")
    assert (binary.user, binary.group, binary.mode) == ("root", "root", 0o755)
    assert binary.sha256sum == hashlib.sha256(BUILD.read_bytes()).hexdigest()


def test_the_exporter_unit_is_hardened(host) -> None:
    out = host.check_output("systemd-analyze security rvm-tegra-exporter.service | tail -n 1")
    exposure = float(re.search(r"exposure level .*?: (\d+\.\d+)", out)[1])
    print(f"rvm-tegra-exporter.service exposure {exposure}")
    assert exposure <= 2.5, out


def test_system_directories_keep_their_owners(host) -> None:
    for path in ["/etc", "/usr", "/var", "/var/lib/prometheus/node-exporter"]:
        assert (host.file(path).user, host.file(path).mode) == ("root", 0o755)
