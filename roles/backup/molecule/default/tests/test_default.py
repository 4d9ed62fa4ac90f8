"""What an operator checks after the backup role: backups happen, are fresh, pruned, readable, and private.

The podman:// backend talks to the containers directly (one `podman exec` per command).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import testinfra

testinfra_hosts = ["podman://rvm-molecule-backup-dev"]
PASSWORD = "molecule-only-restic-password-93c1"
PROM = "/var/lib/prometheus/node-exporter/rvm_backup.prom"
ROLE = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
# Where the role builds the driver on the control node (_backup_driver_build).
BUILD = ROLE.parent.parent / ".cache" / "agents" / "rvm-backup.pyz"


@pytest.fixture(scope="module")
def server():
    return testinfra.get_host("podman://rvm-molecule-backup-srv")


def metric(host, name: str) -> float:
    found = re.search(rf"^{name}{{[^}}]*}} (\S+)$", host.file(PROM).content_string, re.M)
    assert found, f"{name} missing from {PROM}"
    return float(found[1])


def test_the_driver_is_the_one_file_zipapp_built_on_the_control_node(host) -> None:
    driver = host.file("/usr/local/sbin/rvm-backup")
    assert (driver.user, driver.group, driver.mode) == ("root", "root", 0o755)
    assert driver.sha256sum == hashlib.sha256(BUILD.read_bytes()).hexdigest()
    assert driver.content.startswith(b"#!/usr/bin/python3\n")
    # -I -S: no site or user packages: the driver needs the device's standard library only.
    helped = host.run("/usr/bin/python3 -I -S /usr/local/sbin/rvm-backup --help")
    assert helped.rc == 0 and "{run,restore,snapshots,status,check-config}" in helped.stdout, helped.stderr


def test_the_timer_is_enabled_and_scheduled(host) -> None:
    timer = host.service("rvm-backup.timer")
    assert timer.is_enabled and timer.is_running
    listed = host.run("systemctl list-timers rvm-backup.timer --no-legend").stdout
    assert "rvm-backup.service" in listed


def test_backups_are_fresh_and_pruned_to_the_retention(host) -> None:
    status = host.run("rvm-backup status")
    assert status.rc == 0, status.stdout + status.stderr
    assert metric(host, "rvm_backup_last_run_success") == 1
    assert metric(host, "rvm_backup_last_check_success") == 1
    now = float(host.run("date +%s").stdout)
    assert now - metric(host, "rvm_backup_last_success_timestamp_seconds") < 600
    snapshots = json.loads(host.check_output("rvm-backup snapshots"))
    assert len(snapshots) == 2 == metric(host, "rvm_backup_snapshots")  # keep_last 2 after 4 runs


def config(host) -> dict:
    return json.loads(host.file("/etc/rvm-backup/config.json").content_string)


def test_the_snapshot_holds_a_consistent_copy_not_the_live_files(host) -> None:
    latest = json.loads(host.check_output("rvm-backup snapshots"))[-1]["id"]
    cfg = config(host)
    files = host.run(
        "RESTIC_PASSWORD_FILE=/etc/rvm-backup/password restic --cache-dir /var/lib/rvm-backup/cache "
        "-r %s -o sftp.command=%s ls %s",
        cfg["repository"],
        cfg["sftp_command"],
        latest,
    )
    assert files.rc == 0, files.stderr
    paths = files.stdout.splitlines()
    assert "/var/lib/rvm-backup/staging/rvm-edge.sqlite3" in paths
    assert "/var/lib/rvm-edge/rvm-edge.sqlite3" not in paths
    assert not [p for p in paths if p.endswith(("-wal", "-shm"))]


def test_a_restore_gives_back_every_row(host) -> None:
    host.run("rm -rf /tmp/restore-check")
    restored = json.loads(
        host.check_output("rvm-backup restore --snapshot latest --target /tmp/restore-check")
    )
    db = restored["databases"][0]
    assert db["integrity"] == "ok"
    count = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM deposits').fetchone()[0])"
    assert host.check_output(f'python3 -c "{count}" {db["restored"]}') == "53"  # 50 + 3 from the side effect


def test_secrets_stay_private(host) -> None:
    for path in ("/etc/rvm-backup/password", "/etc/rvm-backup/config.json", "/etc/rvm-backup/id_ed25519"):
        f = host.file(path)
        assert f.user == "root" and f.mode == 0o600, path
    journal = host.run("journalctl --no-pager -u rvm-backup.service").stdout
    assert "snapshot" in journal and PASSWORD not in journal
    assert PASSWORD not in host.file(PROM).content_string
    assert PASSWORD not in host.file("/etc/rvm-backup/config.json").content_string


def test_the_device_account_is_chrooted_sftp_only(host, server) -> None:
    account = server.user("rb-rvm-molecule-backup-dev")
    assert account.exists and account.shell == "/usr/sbin/nologin"
    assert server.file("/srv/restic/rvm-molecule-backup-dev").user == "root"
    assert server.file("/srv/restic/rvm-molecule-backup-dev/repo").mode == 0o700
    tokens = config(host)["sftp_command"].split()
    assert tokens[0] == "ssh" and tokens[-2:] == ["-s", "sftp"]
    shell = host.run(" ".join([*tokens[:-2], "id"]))
    assert "uid=" not in shell.stdout  # ForceCommand internal-sftp: no command runs
    sftp = ["sftp", "-b", "-", *("-P" if t == "-p" else t for t in tokens[1:-2])]
    listing = host.run("echo 'ls /' | " + " ".join(sftp))
    assert listing.rc == 0, listing.stderr
    assert "/repo" in listing.stdout and "srv" not in listing.stdout  # only its own chroot
