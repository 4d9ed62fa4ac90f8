"""The lab fleet's main job and its data safety, on the session's one converge (conftest.py).

`site.yml` converges every lab host: rvm-edge on every device delivering deposits to the platform, a fresh
backup of every device, and a lost database restored by `restore.yml`. Timings are figures (JSON at the end
of the session), not assertions.
"""

from __future__ import annotations

import json
import re
import time

from fleet_helpers import FIGURES, FIRST_DEPLOY_REPORT, Recap, devices, lab_hosts, readyz, sh, sim_get


def test_site_converges_every_host(fleet: Recap) -> None:
    # localhost is the control node: site.yml's lab plays (ZeroTier Central, the Jetson stand-in) run there.
    assert sorted(host for host in fleet if host != "localhost") == lab_hosts()
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in fleet.values()), fleet


def test_new_devices_were_installed_together_in_one_batch(fleet: Recap) -> None:
    """A fresh fleet's devices run nothing yet, so nothing needs a canary: the first converge installs
    rvm-edge on all of them in one batch (playbooks/deploy.yml), not one device after another."""
    report = json.loads(FIRST_DEPLOY_REPORT.read_text())
    FIGURES["first_deploy_batch_s"] = [b["seconds"] for b in report["batches"]]
    assert [sorted(b["hosts"]) for b in report["batches"]] == [devices()], report["batches"]
    firsts = {h["host"]: (h["from"] or "-", h["result"]) for h in report["hosts"]}
    assert firsts == {d: ("-", "ok") for d in devices()}, report["hosts"]


def test_every_device_runs_rvm_edge_and_delivers_deposits(fleet: Recap) -> None:
    """The main job: each device detects items in its camera frames and the platform receives them."""
    fleet_devices = devices()
    for device in fleet_devices:
        ready = readyz(device)
        assert ready["ready"] and ready["frames_processed"] > 0, (device, ready)
        assert ready["checks"]["platform"]["ok"], (device, ready["checks"]["platform"])
    names = {m["id"]: m["name"] for m in sim_get("machines")}  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    while True:  # deposits arrive as items pass the camera: poll with a bound
        per_device: dict[str, int] = {}
        for deposit in sim_get("deposits"):  # type: ignore[union-attr]
            name = names.get(deposit["machine_id"], "?")
            per_device[name] = per_device.get(name, 0) + 1
        if all(per_device.get(d, 0) > 0 for d in fleet_devices) or time.monotonic() > deadline:
            break
        time.sleep(2)
    FIGURES["deposits_received"] = sum(per_device.values())
    assert all(per_device.get(d, 0) > 0 for d in fleet_devices), per_device


DEPOSIT_IDS = (
    "import sqlite3, sys, json; c = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
    "print(json.dumps([r[0] for r in c.execute('SELECT deposit_id FROM deposits')]))"
)


def deposit_ids(device: str, path: str) -> set[str]:
    proc = sh(["podman", "exec", device, "python3", "-c", DEPOSIT_IDS, path])
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_every_device_has_a_fresh_backup_and_says_so(fleet: Recap) -> None:
    for device in devices():
        status = sh(["podman", "exec", device, "rvm-backup", "status"])
        assert status.returncode == 0, (device, status.stdout, status.stderr)
        metrics = sh(["podman", "exec", device, "cat", "/var/lib/prometheus/node-exporter/rvm_backup.prom"])
        assert f'rvm_backup_last_run_success{{host="{device}"}} 1' in metrics.stdout, metrics.stdout


def test_a_lost_database_comes_back_from_the_backup(fleet: Recap) -> None:
    """The operator's story: a device's database is lost; restore.yml brings back what the last backup held.

    The device's hourly timer is held from the backup to the restore: a scheduled run in between would
    back up the emptied database and rightly become `latest`. A second restore with the timer running
    shows restore.yml holds it during the restore and resumes it (a CI run on 2026-12-07 failed on a
    scheduled run's forget --prune that held the repository while restore.yml fetched)."""
    device = devices()[-1]
    systemctl = ["podman", "exec", device, "systemctl"]
    assert sh([*systemctl, "stop", "rvm-backup.timer"]).returncode == 0
    try:
        start = time.monotonic()
        backed_up = sh([*systemctl, "start", "rvm-backup.service"])
        FIGURES["backup_run_s"] = round(time.monotonic() - start, 1)
        assert backed_up.returncode == 0, backed_up.stderr
        saved = deposit_ids(device, "/var/lib/rvm-backup/staging/rvm-edge.sqlite3")
        assert saved, "the backup holds no deposit: the device recorded nothing before it"

        lose = (
            "systemctl stop rvm-edge && rm -f /var/lib/rvm-edge/rvm-edge.sqlite3* && systemctl start rvm-edge"
        )
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
        assert sh([*systemctl, "is-active", "rvm-backup.timer"]).stdout.strip() == "inactive", (
            "a held timer was started"
        )
    finally:
        assert sh([*systemctl, "start", "rvm-backup.timer"]).returncode == 0
    ready = readyz(device)
    assert ready["ready"], ready

    again = sh(["ansible-playbook", "playbooks/restore.yml", "-l", device])
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    held = re.search(
        r"Hold the backup timer during the restore\][^\n]*\n(?:[^\n]*\n)??(\w+): \[", again.stdout
    )
    assert held and held[1] == "changed", again.stdout[-3000:]
    assert sh([*systemctl, "is-active", "rvm-backup.timer"]).stdout.strip() == "active", (
        "the timer was not resumed"
    )
    assert saved <= deposit_ids(device, "/var/lib/rvm-edge/rvm-edge.sqlite3")
    unlimited = sh(["ansible-playbook", "playbooks/restore.yml"])
    assert unlimited.returncode != 0 and "Name the device(s) to restore with -l" in unlimited.stdout
