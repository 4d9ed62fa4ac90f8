"""The whole lab fleet, end to end: up, converge, converge again, down.

This is the issue's "done when" as a test: `site.yml` converges every lab host (rvm-edge delivering
deposits, backups taken, a lost database restored), a second run changes nothing, `lab up` twice changes nothing, and `lab down` removes the lab's containers,
network and volumes and nothing else. Timings are printed as JSON (figures, not assertions).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABCTL = [sys.executable, str(ROOT / "lab" / "labctl.py")]
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)
SENTINEL = "rvm-fleet-test-sentinel"
FIGURES: dict[str, float] = {}


def sh(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def playbook(*extra: str) -> tuple[dict[str, dict[str, int]], str, float]:
    start = time.monotonic()
    proc = sh(["ansible-playbook", "site.yml", *extra])
    elapsed = time.monotonic() - start
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(proc.stdout)
    }
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return recap, proc.stdout, elapsed


def lab_inventory() -> dict:
    return json.loads(sh(["ansible-inventory", "-i", "inventories/lab", "--list"]).stdout)


def lab_hosts() -> list[str]:
    data = lab_inventory()
    return sorted(h for h in data["_meta"]["hostvars"]) or sorted(
        {h for g in data.values() if isinstance(g, dict) for h in g.get("hosts", [])}
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    start = time.monotonic()
    proc = sh([*LABCTL, "up"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    FIGURES["lab_up_s"] = round(time.monotonic() - start, 1)
    yield
    sh(["podman", "rm", "--force", SENTINEL])
    print("\nFLEET FIGURES " + json.dumps(FIGURES))


def test_site_converges_every_host(lab: None) -> None:
    recap, _, elapsed = playbook()
    FIGURES["converge_s"] = round(elapsed, 1)
    assert sorted(recap) == lab_hosts()
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap


def sim_get(path: str) -> object:
    """GET the simulator's admin API from inside rvm-platform: the token never leaves the container."""
    script = (
        'curl -fsS -H "Authorization: Bearer $(cat /etc/rvm-platform-sim/admin-token)" '
        f"http://127.0.0.1:8000/_sim/{path}"
    )
    proc = sh(["podman", "exec", "rvm-platform", "sh", "-c", script])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def devices() -> list[str]:
    return sorted(lab_inventory()["rvm_devices"]["hosts"])


def test_every_device_runs_rvm_edge_and_delivers_deposits(lab: None) -> None:
    """The main job: each device detects items in its camera frames and the platform receives them."""
    fleet = devices()
    for device in fleet:
        proc = sh(["podman", "exec", device, "curl", "-fsS", "http://127.0.0.1:8080/readyz"])
        ready = json.loads(proc.stdout)
        assert ready["ready"] and ready["frames_processed"] > 0, (device, ready)
        assert ready["checks"]["platform"]["ok"], (device, ready["checks"]["platform"])
    names = {m["id"]: m["name"] for m in sim_get("machines")}  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    while True:  # deposits arrive as items pass the camera: poll with a bound
        per_device: dict[str, int] = {}
        for deposit in sim_get("deposits"):  # type: ignore[union-attr]
            name = names.get(deposit["machine_id"], "?")
            per_device[name] = per_device.get(name, 0) + 1
        if all(per_device.get(d, 0) > 0 for d in fleet) or time.monotonic() > deadline:
            break
        time.sleep(2)
    FIGURES["deposits_received"] = sum(per_device.values())
    assert all(per_device.get(d, 0) > 0 for d in fleet), per_device


DEPOSIT_IDS = (
    "import sqlite3, sys, json; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
    "print(json.dumps([r[0] for r in c.execute('SELECT deposit_id FROM deposits')]))"
)


def deposit_ids(device: str, path: str) -> set[str]:
    proc = sh(["podman", "exec", device, "python3", "-c", DEPOSIT_IDS, path])
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_every_device_has_a_fresh_backup_and_says_so(lab: None) -> None:
    for device in devices():
        status = sh(["podman", "exec", device, "rvm-backup", "status"])
        assert status.returncode == 0, (device, status.stdout, status.stderr)
        metrics = sh(["podman", "exec", device, "cat", "/var/lib/prometheus/node-exporter/rvm_backup.prom"])
        assert f'rvm_backup_last_run_success{{host="{device}"}} 1' in metrics.stdout, metrics.stdout


def test_a_lost_database_comes_back_from_the_backup(lab: None) -> None:
    """The operator's story: a device's database is lost; restore.yml brings back what the last backup held."""
    device = devices()[-1]
    start = time.monotonic()
    backed_up = sh(["podman", "exec", device, "systemctl", "start", "rvm-backup.service"])
    FIGURES["backup_run_s"] = round(time.monotonic() - start, 1)
    assert backed_up.returncode == 0, backed_up.stderr
    saved = deposit_ids(device, "/var/lib/rvm-backup/staging/rvm-edge.sqlite3")
    assert saved, "the backup holds no deposit: the device recorded nothing before it"

    lose = "systemctl stop rvm-edge && rm -f /var/lib/rvm-edge/rvm-edge.sqlite3* && systemctl start rvm-edge"
    assert sh(["podman", "exec", device, "sh", "-c", lose]).returncode == 0
    assert not saved & deposit_ids(device, "/var/lib/rvm-edge/rvm-edge.sqlite3")

    start = time.monotonic()
    proc = sh(["ansible-playbook", "playbooks/restore.yml", "-l", device])
    FIGURES["restore_playbook_s"] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recovered = re.search(r"ready ([0-9.]+) s after it stopped", proc.stdout)
    assert recovered, proc.stdout[-3000:]
    FIGURES["restore_recovery_s"] = float(recovered[1])
    assert saved <= deposit_ids(device, "/var/lib/rvm-edge/rvm-edge.sqlite3")
    ready = json.loads(sh(["podman", "exec", device, "curl", "-fsS", "http://127.0.0.1:8080/readyz"]).stdout)
    assert ready["ready"], ready
    unlimited = sh(["ansible-playbook", "playbooks/restore.yml"])
    assert unlimited.returncode != 0 and "Name the device(s) to restore with -l" in unlimited.stdout


def test_second_run_changes_nothing(lab: None) -> None:
    recap, stdout, elapsed = playbook()
    FIGURES["second_converge_s"] = round(elapsed, 1)
    changed = {host: r["changed"] for host, r in recap.items() if r["changed"]}
    assert not changed, f"not idempotent: {changed}\n" + "\n".join(
        line for line in stdout.splitlines() if line.startswith("changed:")
    )


def test_check_mode_reports_no_change_on_a_converged_fleet(lab: None) -> None:
    recap, _, _ = playbook("--check", "--diff")
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap


def test_lab_up_twice_changes_nothing(lab: None) -> None:
    start = time.monotonic()
    proc = sh([*LABCTL, "up"])
    FIGURES["lab_up_again_s"] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, proc.stderr
    assert f"lab up: {len(lab_hosts())} hosts, 0 changed" in proc.stdout


def test_down_removes_the_lab_and_nothing_else(lab: None) -> None:
    image = sh(["podman", "inspect", "--format", "{{.ImageName}}", "rvm-lab-01"]).stdout.strip()
    made = sh(["podman", "run", "-d", "--name", SENTINEL, image, "sleep", "infinity"])
    assert made.returncode == 0, made.stderr
    proc = sh([*LABCTL, "down"])
    assert proc.returncode == 0, proc.stderr
    for kind, fmt in (("container", "{{.Names}}"), ("network", "{{.Name}}"), ("volume", "{{.Name}}")):
        extra = ["--all"] if kind == "container" else []
        left = sh(
            ["podman", kind, "ls", *extra, "--filter", f"label=io.rvm-fleet.lab={kind}", "--format", fmt]
        ).stdout.split()
        assert left == [], f"lab {kind}s left behind: {left}"
    assert sh(["podman", "container", "exists", SENTINEL]).returncode == 0, (
        "down removed a container it did not make"
    )
