"""Device hardening on the lab fleet (roles/hardening, docs/hardening.md), checked the way an auditor
would: a password login refused, a port off the allow-list unreachable from another lab host, the
metrics ports open to the monitoring server only, the firewall's drop counter moving, and a wrong
firewall variable that never costs the control node its connection.

Network probes run inside lab containers (another host on the device's network); the control node is
this machine. The bad-input checks at the end need no lab: they run the role's preflight locally.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from fleet_helpers import FIGURES, ROOT, lab_attachment, power_on, readyz, sh

DEVICE, PEER, MONITOR = "rvm-lab-01", "rvm-lab-02", "rvm-monitor"
PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
    "try:\n    s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
    "except ConnectionRefusedError:\n    print('refused')\n"
    "except OSError:\n    print('dropped')\n"
)


def exec_in(host: str, *args: str) -> str:
    proc = sh(["podman", "exec", host, *args], timeout=120)
    assert proc.returncode == 0, (host, args, proc.stderr)
    return proc.stdout.strip()


def probe(src: str, address: str, port: int, timeout: float = 2.0) -> str:
    """From lab host `src`: 'open', 'refused' (a reset: through the firewall, nothing listens) or
    'dropped' (no answer: the firewall dropped it)."""
    return exec_in(src, "python3", "-c", PROBE, address, str(port), str(timeout))


def address(host: str) -> str:
    return exec_in(
        host, "sh", "-c", "ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1"
    )


def dropped(host: str) -> int:
    out = exec_in(host, "nft", "-j", "list", "counter", "inet", "rvm_filter", "input_dropped")
    return int(json.loads(out)["nftables"][1]["counter"]["packets"])


def ruleset(host: str) -> str:
    """The loaded table without its counter values (they move while we look)."""
    text = exec_in(host, "nft", "list", "table", "inet", "rvm_filter")
    return "\n".join(line for line in text.splitlines() if "packets" not in line)


def control_node_gets_in(host: str) -> None:
    """The control node's two ways in: Ansible's own connection, and TCP to sshd on the management
    address (the way a real fleet's ssh goes, through the firewall)."""
    ping = sh(["ansible", host, "-m", "ansible.builtin.ping"], timeout=120)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    with socket.create_connection((address(host), 22), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")


@pytest.fixture
def listener(fleet):
    """A service on port 8999, which no rule allows, on every address of the device."""
    exec_in(DEVICE, "systemd-run", "--unit=probe-8999", "python3", "-m", "http.server", "8999")
    deadline = time.monotonic() + 20
    while probe(DEVICE, "127.0.0.1", 8999) != "open":
        assert time.monotonic() < deadline, "the probe listener did not start"
        time.sleep(0.2)
    yield 8999
    sh(["podman", "exec", DEVICE, "systemctl", "stop", "probe-8999"])


def test_password_login_is_refused(fleet) -> None:
    """From the control node: sshd offers publickey only, for any user, so no password is asked."""
    for user in ("root", "nvidia"):
        proc = subprocess.run(
            [
                "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
                "-o", "ConnectTimeout=10", f"{user}@{address(DEVICE)}", "true",
            ],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.returncode == 255
        assert "Permission denied (publickey)" in proc.stderr, proc.stderr
    settings = exec_in(DEVICE, "sshd", "-T", "-C", "user=root,host=x,addr=127.0.0.1")
    assert "passwordauthentication no" in settings.splitlines()
    assert f"listenaddress {address(DEVICE)}:22" in settings.splitlines()
    assert "maxstartups 10:30:60" in settings.splitlines()  # a device: few unauthenticated at once


def test_port_off_the_allow_list_is_dropped_and_counted(fleet, listener) -> None:
    before = dropped(DEVICE)
    assert probe(DEVICE, "127.0.0.1", listener) == "open"
    assert probe(PEER, address(DEVICE), listener) == "dropped"
    assert probe(PEER, address(DEVICE), 22) == "dropped"  # ssh: a device is no control node
    after = dropped(DEVICE)
    assert after >= before + 2
    exec_in(DEVICE, "systemctl", "start", "rvm-hardening-metrics.service")
    metrics = exec_in(DEVICE, "cat", "/var/lib/prometheus/node-exporter/rvm_hardening.prom")
    line = next(
        x for x in metrics.splitlines() if x.startswith('rvm_firewall_dropped_packets_total{chain="input"}')
    )
    assert int(line.split()[-1]) >= after


def test_metrics_only_from_the_monitoring_server(fleet) -> None:
    """issue 11's exposure rule, through the firewall: a lab host that is not a monitoring server is
    dropped on :9100 and :8080; rvm-monitor gets through (node-exporter answers where it is installed)."""
    target = address(DEVICE)
    for port in (9100, 8080):
        assert probe(PEER, target, port) == "dropped", port
        assert probe("rvm-platform", target, port) == "dropped", port
    assert probe(MONITOR, target, 8080) == "open"
    assert probe(MONITOR, target, 9100) in ("open", "refused")


def test_unparseable_firewall_rule_is_refused_and_the_ruleset_stays(fleet) -> None:
    before = ruleset(DEVICE)
    proc = sh(
        [
            "ansible-playbook", "playbooks/hardening.yml", "-l", DEVICE, "--tags", "hardening_configure",
            "-e", json.dumps({"hardening_firewall_extra_rules": ["tcp dport 8999 acept"]}),
        ],
        timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Write the ruleset (checked by nft -c)" in proc.stdout
    assert "acept" in proc.stdout  # nft's own message points at the bad word
    assert ruleset(DEVICE) == before
    assert "acept" not in exec_in(DEVICE, "cat", "/etc/nftables.conf")
    control_node_gets_in(DEVICE)


def test_lockout_is_reverted_and_the_control_node_keeps_its_connection(fleet) -> None:
    """A ruleset that parses but shuts the control node out (a wrong control node address): it loads
    with the auto-revert armed, the fresh connection fails, the previous ruleset comes back."""
    before = ruleset(DEVICE)
    start = time.monotonic()
    proc = sh(
        [
            "ansible-playbook", "playbooks/hardening.yml", "-l", DEVICE, "--tags", "hardening_configure",
            "-e", json.dumps({"hardening_firewall_control_nodes": ["192.0.2.1"]}),
        ],
        timeout=600,
    )  # fmt: skip
    FIGURES["hardening_lockout_run_to_revert_s"] = round(time.monotonic() - start, 1)
    assert proc.returncode != 0
    assert "the new firewall ruleset was reverted" in proc.stdout, proc.stdout[-3000:]
    assert "Reach sshd on the management address" in proc.stdout
    assert ruleset(DEVICE) == before
    assert "192.0.2.1" not in exec_in(DEVICE, "cat", "/etc/nftables.conf")
    journal = exec_in(DEVICE, "journalctl", "-o", "cat", "--since=-10min", "-t", "rvm-firewall-revert")
    assert "reverted" in journal
    # The armed timer was disarmed by the rescue: nothing fires later.
    assert (
        sh(["podman", "exec", DEVICE, "systemctl", "is-active", "rvm-firewall-revert.timer"]).stdout.strip()
        != "active"
    )
    control_node_gets_in(DEVICE)


def test_backup_server_keeps_its_match_block(fleet) -> None:
    """The backup role's sftp Match block (end of sshd_config) and the hardening drop-in (top) live
    together: the device accounts' group may log in, and the Match settings still apply to it."""
    settings = exec_in("rvm-backup", "sshd", "-T", "-C", "user=rb-rvm-lab-01,host=x,addr=10.0.0.1")
    lines = settings.splitlines()
    assert "forcecommand internal-sftp" in lines
    assert "chrootdirectory %h" in lines
    assert "passwordauthentication no" in lines
    assert "allowgroups restic-devices" in lines
    # a converge's first backups come from a whole batch of devices at once (20 lost 6 at 10:30:60)
    assert "maxstartups 64:30:256" in lines


# --- A security update that needs a reboot, through the drain (issue 18) ----------------------------


def pid1_started(host: str) -> str:
    """PID 1's start time: a lab container shares the host's kernel, so its boot id never changes."""
    return exec_in(host, "cut", "-d ", "-f22", "/proc/1/stat")


def exists(host: str, path: str) -> bool:
    return sh(["podman", "exec", host, "test", "-e", path]).returncode == 0


def textfile_metric(host: str, name: str) -> float:
    exec_in(host, "systemctl", "start", "rvm-hardening-metrics.service")
    text = exec_in(host, "cat", "/var/lib/prometheus/node-exporter/rvm_hardening.prom")
    return float(next(x for x in text.splitlines() if x.startswith(name + " ")).split()[-1])


def power_on_after_shutdown(host: str, run: subprocess.Popen[str], deadline: float) -> int:
    """Power the device on (fleet_helpers.power_on) each time the container has shut down, until the
    playbook ends. Returns how many power-ons it did."""
    attachment = lab_attachment(host)
    powered = 0
    while run.poll() is None:
        assert time.monotonic() < deadline, "the reboot playbook did not end"
        state = sh(["podman", "inspect", "-f", "{{.State.Status}}", host]).stdout.strip()
        if state in ("exited", "stopped"):
            power_on(host, attachment)
            powered += 1
        time.sleep(0.2)
    return powered


def test_security_reboot_drains_reboots_and_comes_back_healthy(fleet) -> None:
    """An installed update asks for a reboot (/var/run/reboot-required, as unattended-upgrades leaves
    it): shown as rvm_reboot_required 1; the play takes the update lock, waits for no deposit in
    flight, stops rvm-edge (no new items, its stop commits the decided ones), flushes the outbox,
    reboots (systemctl reboot in the container: systemd shuts everything down and the container
    ends), and waits for rvm-edge ready again before it gives the lock back."""
    exec_in(DEVICE, "sh", "-c", "echo '*** System restart required ***' > /var/run/reboot-required")
    assert textfile_metric(DEVICE, "rvm_reboot_required") == 1
    booted = pid1_started(DEVICE)
    start = time.monotonic()
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    run = subprocess.Popen(
        [
            "ansible-playbook", "playbooks/hardening.yml", "-l", DEVICE, "--tags", "hardening_reboot",
            "-e", "hardening_reboot_now=true",
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        powered = power_on_after_shutdown(DEVICE, run, start + 600)
    finally:
        if run.poll() is None:
            run.kill()
    out = run.communicate()[0]
    FIGURES["hardening_reboot_through_drain_s"] = round(time.monotonic() - start, 1)
    assert run.returncode == 0, out[-4000:]
    assert powered == 1
    steps = [
        "Take the update lock of this device",
        "Wait until no deposit is in flight",
        "Stop the service (no new deposits",
        "Flush the outbox to the platform",
        "outbox flush: requeued ",
        "outbox empty",  # the flush sent what was queued: the platform has every deposit
        "TASK [hardening : Reboot]",
        "Wait until the service is ready",
        "Give the update lock of this device back",
    ]
    print(next((line.strip() for line in out.splitlines() if "outbox flush:" in line), "no flush line"))
    at = [out.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), dict(zip(steps, at, strict=True))
    assert pid1_started(DEVICE) != booted  # it did boot again
    assert readyz(DEVICE)["ready"] is True
    assert not exists(DEVICE, "/var/run/reboot-required")
    assert textfile_metric(DEVICE, "rvm_reboot_required") == 0
    assert not exists(DEVICE, "/run/lock/rvm-edge-update.lock")  # the update lock was given back
    control_node_gets_in(DEVICE)


# --- Lynis (issue 18's budget: hardening index >= 80 on a lab device) -------------------------------

LYNIS_DEB = ROOT / ".lab" / "cache" / "lynis.deb"
LYNIS_OUT = ("/tmp/lynis.log", "/tmp/lynis-report.dat")
APT_WAIT = ("-y", "-o", "DPkg::Lock::Timeout=120")


def lynis_package() -> Path:
    """Debian's lynis package, fetched once into .lab/cache by apt on the control node (the lab
    containers download nothing). The role does not install Lynis: the audit brings it and takes it
    away again."""
    if not LYNIS_DEB.exists():
        LYNIS_DEB.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["apt-get", "download", "lynis"],
            cwd=LYNIS_DEB.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        debs = sorted(LYNIS_DEB.parent.glob("lynis_*.deb"))
        assert debs, f"apt-get download lynis failed: {proc.stderr}"
        debs[-1].rename(LYNIS_DEB)
    return LYNIS_DEB


def test_lynis_hardening_index_meets_the_budget(fleet) -> None:
    """`lynis audit system --quick` on a converged lab device: hardening index >= 80, no warnings."""
    assert sh(["podman", "cp", str(lynis_package()), f"{DEVICE}:/tmp/lynis.deb"]).returncode == 0
    try:
        # apt waits for a dpkg lock that a converge's package task may hold; nothing is downloaded
        # (lynis needs only e2fsprogs, which the image has).
        exec_in(DEVICE, "apt-get", "install", "-qq", "--no-install-recommends", *APT_WAIT, "/tmp/lynis.deb")
        start = time.monotonic()
        sh(
            [
                "podman", "exec", DEVICE, "lynis", "audit", "system", "--quick", "--no-colors",
                "--logfile", LYNIS_OUT[0], "--report-file", LYNIS_OUT[1],
            ],
            timeout=600,
        )  # fmt: skip
        FIGURES["lynis_audit_s"] = round(time.monotonic() - start, 1)
        report = exec_in(DEVICE, "cat", LYNIS_OUT[1]).splitlines()
    finally:
        sh(["podman", "exec", DEVICE, "apt-get", "purge", "-qq", *APT_WAIT, "lynis"])
        sh(["podman", "exec", DEVICE, "rm", "-f", "/tmp/lynis.deb", *LYNIS_OUT])
    index = int(next(x for x in report if x.startswith("hardening_index=")).split("=")[1])
    suggestions = sorted({x.split("=", 1)[1].split("|")[0] for x in report if x.startswith("suggestion[]=")})
    warnings = [x.split("=", 1)[1] for x in report if x.startswith("warning[]=")]
    FIGURES["lynis_hardening_index"] = index
    FIGURES["lynis_suggestions"] = len(suggestions)
    FIGURES["lynis_warnings"] = len(warnings)
    print("lynis suggestions left:", " ".join(suggestions))
    assert index >= 80, suggestions
    assert not warnings


# --- Bad input refused by name (no lab needed: the role's read-only preflight on this machine) ----


def preflight(tmp_path: Path, extra: dict) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "preflight.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: hardening, tasks_from: preflight}\n"
    )
    return sh(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(play), "-e", json.dumps(extra)],
        timeout=300,
    )


def test_malformed_operator_key_is_refused_by_name(tmp_path: Path) -> None:
    good = (
        (ROOT / ".lab" / "ssh" / "id_ed25519.pub").read_text().strip() if (ROOT / ".lab/ssh").exists() else ""
    )
    operators = [
        {"name": "alice", "keys": [good]} if good else {"name": "alice", "state": "absent"},
        {"name": "mallory", "keys": ["ssh-ed25519 AAAAnot-a-key mallory@laptop"]},
    ]
    proc = preflight(tmp_path, {"hardening_operators": operators})
    assert proc.returncode != 0
    assert "a key of operator 'mallory' is not a usable OpenSSH public key" in proc.stdout
    assert "'alice'" not in proc.stdout.split("is not a usable")[0].splitlines()[-1]


def test_invalid_maintenance_window_is_refused_by_name(tmp_path: Path) -> None:
    for window in ("25:00-26:00", "02:00", "03:00-03:00"):
        proc = preflight(tmp_path, {"hardening_maintenance_window": window})
        assert proc.returncode != 0, window
        assert "hardening_maintenance_window must be a time range" in proc.stdout, window
        assert f"got '{window}'" in proc.stdout
