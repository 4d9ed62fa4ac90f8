"""What an auditor checks on a device after the hardening role: keys-only ssh, a default-deny firewall
that drops and counts, security-only updates that download nothing here, operators and sudo.

The podman:// backend talks to the containers directly; the network checks run from the peer
container (another host on the device's network) and from this machine (the control node).
"""

from __future__ import annotations

import subprocess
import time

import pytest
import testinfra

testinfra_hosts = ["podman://rvm-molecule-hardening"]
PEER = testinfra.get_host("podman://rvm-molecule-hardening-peer")
PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
    "try:\n    s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
    "except ConnectionRefusedError:\n    print('refused')\n"
    "except OSError:\n    print('dropped')\n"
)


def probe(from_host, address: str, port: int, timeout: float = 2.0) -> str:
    """'open', 'refused' (a RST: nothing listens) or 'dropped' (no answer: the firewall)."""
    return from_host.check_output("python3 -c %s %s %s %s", PROBE, address, str(port), str(timeout))


def address_of(host) -> str:
    return host.check_output("ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1")


def dropped(host) -> int:
    out = host.check_output("nft -j list counter inet rvm_filter input_dropped")
    import json

    return int(json.loads(out)["nftables"][1]["counter"]["packets"])


@pytest.fixture(scope="module")
def listener(host):
    """A service on a port no rule allows (8999), on every address of the device."""
    host.run("systemd-run --unit=probe-8999 python3 -m http.server 8999")
    deadline = time.monotonic() + 15
    while probe(host, "127.0.0.1", 8999) != "open":
        assert time.monotonic() < deadline, "the probe listener did not start"
        time.sleep(0.2)
    yield 8999
    host.run("systemctl stop probe-8999")


def test_sshd_allows_keys_only(host) -> None:
    conf = host.check_output("sshd -T -C user=root,host=x,addr=127.0.0.1")
    settings: dict[str, str] = {}
    for line in conf.splitlines():
        key, _, value = line.partition(" ")
        settings[key] = f"{settings[key]} {value}" if key in settings else value
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitrootlogin"] == "without-password"
    assert settings["authenticationmethods"] == "publickey"
    assert settings["allowgroups"].split() == ["root", "rvm-operators"]
    assert settings["maxauthtries"] == "3"
    assert settings["logingracetime"] == "20"
    assert "cbc" not in settings["ciphers"] and "sha1" not in settings["macs"]
    assert settings["listenaddress"] == f"{address_of(host)}:22"


def test_password_login_is_refused(host) -> None:
    """From the control node: sshd offers publickey only; a password is never even asked for."""
    proc = subprocess.run(
        [
            "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
            "-o", "ConnectTimeout=10", f"nvidia@{address_of(host)}", "true",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 255
    assert "Permission denied (publickey)" in proc.stderr


def test_port_not_allowed_is_dropped_and_counted(host, listener) -> None:
    address = address_of(host)
    before = dropped(host)
    assert probe(host, "127.0.0.1", listener) == "open"  # the service itself works
    assert probe(PEER, address, listener) == "dropped"
    assert probe(PEER, address, 9100) == "dropped"  # metrics: the peer is no monitoring server
    assert probe(PEER, address, 22) == "dropped"  # ssh: the peer is no control node
    assert dropped(host) > before
    # The metric follows the counter.
    host.check_output("systemctl start rvm-hardening-metrics.service")
    metrics = host.file("/var/lib/prometheus/node-exporter/rvm_hardening.prom").content_string
    assert 'rvm_firewall_dropped_packets_total{chain="input"} ' in metrics
    value = next(
        int(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('rvm_firewall_dropped_packets_total{chain="input"}')
    )
    assert value > before
    assert "rvm_firewall_loaded 1" in metrics
    assert "rvm_reboot_required 0" in metrics


def test_control_node_reaches_ssh_and_the_api(host) -> None:
    address = address_of(host)
    import socket

    for port in (22,):
        with socket.create_connection((address, port), timeout=5):
            pass


def test_ruleset_loads_at_boot(host) -> None:
    assert host.service("nftables").is_enabled
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_operators_and_sudo(host) -> None:
    alice = host.user("alice")
    assert "rvm-operators" in alice.groups
    keys = host.file("/home/alice/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert keys.content_string.count("ssh-ed25519") == 1
    assert not host.user("bob").exists
    sudoers = host.file("/etc/sudoers.d/50-rvm-operators")
    assert sudoers.mode == 0o440
    assert sudoers.contains("^%rvm-operators ALL=")
    assert host.run("visudo -c").rc == 0
    # sudo works for an operator and is logged.
    assert host.run("runuser -u alice -- sudo -n true").rc == 0
    assert host.file("/var/log/sudo.log").contains("alice")
    # ... and not for anyone else.
    host.run("useradd -m carol 2>/dev/null || true")
    assert host.run("runuser -u carol -- sudo -n true").rc != 0


def test_stock_user_is_locked(host) -> None:
    shadow = host.check_output("getent shadow nvidia").split(":")
    assert shadow[1].startswith("!") and shadow[1].strip("!") == ""  # locked, no password hash left
    assert host.run("runuser -u nobody -- su nvidia -c true </dev/null").rc != 0


def test_security_updates_only_and_no_download_here(host) -> None:
    dump = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    patterns = [
        line for line in dump.splitlines() if line.startswith('Unattended-Upgrade::Origins-Pattern:: "')
    ]
    assert patterns and all("Security" in line for line in patterns)
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in host.check_output("apt-config dump")
    # The lab keeps apt's periodic jobs off: the upgrade job runs, finds nothing to do and ends.
    lists_before = host.check_output("ls -l --time-style=+%s /var/lib/apt/lists | md5sum")
    run = host.run("timeout 60 systemctl start apt-daily-upgrade.service")
    assert run.rc == 0
    assert host.check_output("ls -l --time-style=+%s /var/lib/apt/lists | md5sum") == lists_before
    timer = host.check_output("systemctl cat apt-daily-upgrade.timer")
    assert "OnCalendar=*-*-* 02:00:00" in timer
    assert "Persistent=false" in timer
