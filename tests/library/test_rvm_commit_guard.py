"""rvm-edge-commit-guard, the device's side of commit-or-rollback (issue 16), run as the unit runs it
(python3 -I, its library installed as the role installs it) on a real release store, with stand-ins
for systemctl and runuser (they record calls; runuser answers the app's `db` commands) and a real
HTTP /readyz. The fleet test (tests/fleet/test_commit.py) runs it on the lab's real systemd."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.rvm_commit_core import arm
from ansible.module_utils.rvm_commit_state import CommitState
from device_python import device_python
from rvm_release_helpers import MODULE_UTILS, REPO, ModuleRun, make_bundle

GUARD = REPO / "roles" / "rvm_edge" / "files" / "rvm-edge-commit-guard"
SHIPPED = [
    "rvm_commit_core.py",
    "rvm_commit_state.py",
    "rvm_release_bundle.py",
    "rvm_release_store.py",
    "rvm_release_ops.py",
]


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"ready": True, "frames_processed": 3}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def device(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Releases 1.0.0 then 2.0.0 switched to (current 2.0.0, previous 1.0.0), the guard's library,
    stand-ins on PATH, a ready /readyz, and a dead run's update lock."""
    root = tmp_path / "opt" / "rvm-edge"
    module = ModuleRun()
    for version in ("1.0.0", "2.0.0"):
        bundle = make_bundle(tmp_path / "bundles", version)
        assert not module({"root": str(root), "state": "present", "bundle": str(bundle)}).get("failed")
        assert not module({"root": str(root), "state": "current", "version": version}).get("failed")
        # as the role renders it: each release's config beside its code
        (root / "releases" / version / "config.yml").write_text(f"# the config of {version}\n")
    lib = tmp_path / "lib"
    (lib / "ansible" / "module_utils").mkdir(parents=True)
    for name in SHIPPED:
        (lib / "ansible" / "module_utils" / name).write_text((MODULE_UTILS / name).read_text())
    (lib / "ansible" / "__init__.py").write_text("")
    (lib / "ansible" / "module_utils" / "__init__.py").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "unit-state").write_text("active\n")
    (tmp_path / "db-version").write_text('{"supported": 2, "database": 2}\n')
    (tmp_path / "migrate-rc").write_text("0\n")
    lock = tmp_path / "run" / "lock" / "rvm-edge-update.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"token": "dead-run", "holder": "ops@ctl: deploy 2.0.0", "since": 1.0}))
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n'
        f'if [ "$1" = show ]; then cat {tmp_path}/unit-state; fi\n'
        f'if [ "$1" = restart ]; then cp {lock} {tmp_path}/lock-during-restart; fi\n'
    )
    (bin_dir / "runuser").write_text(
        "#!/bin/sh\n"
        f'shift 3; echo "$*" >> {tmp_path}/calls\n'
        f'case "$2 $3" in "db version") cat {tmp_path}/db-version ;; '
        f'"db migrate") exit "$(cat {tmp_path}/migrate-rc)" ;; esac\n'
    )
    for tool in ("systemctl", "runuser"):
        (bin_dir / tool).chmod(0o755)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "RVM_EDGE_COMMIT_LIB": str(lib),
        "RVM_EDGE_COMMIT_STATE_DIR": str(tmp_path / "state"),
        "RVM_EDGE_ROOT": str(root),
        "RVM_EDGE_SNAPSHOT_DIR": str(tmp_path / "snapshots"),
        "RVM_EDGE_READYZ_URL": f"http://127.0.0.1:{server.server_address[1]}/readyz",
        "RVM_EDGE_READY_TIMEOUT_S": "10",
        "RVM_EDGE_UPDATE_LOCK": str(lock),
        "RVM_EDGE_TEXTFILE_DIR": str(textfile),
        "RVM_EDGE_COMMIT_POLL_S": "0.1",
    }
    python = device_python("rvm-edge-commit-guard")

    def guard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-I", str(GUARD), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    yield {
        "tmp": tmp_path,
        "root": root,
        "state": CommitState(tmp_path / "state"),
        "guard": guard,
        "lock": lock,
    }
    server.shutdown()


def pend(device: dict[str, Any], timeout_s: float) -> None:
    device["state"].write_pending(
        arm("2.0.0", "1.0.0", time.time(), timeout_s, "dead-run", "ops@ctl: deploy 2.0.0")
    )


def calls(device: dict[str, Any]) -> str:
    path = device["tmp"] / "calls"
    return path.read_text() if path.exists() else ""


def test_a_missed_deadline_rolls_back_restarts_records_counts_and_frees_the_lock(
    device: dict[str, Any],
) -> None:
    pend(device, 0.5)
    done = device["guard"]()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not committed by its deadline" in done.stdout
    root = device["root"]
    assert Path(root / "current").resolve().name == "1.0.0"
    line = json.loads((root / "deploys.jsonl").read_text().splitlines()[-1])
    assert line["action"] == "rollback" and line["from"] == "2.0.0" and line["to"] == "1.0.0"
    assert line["result"] == "ok" and line["by"].startswith("rvm-edge-commit-guard@")
    assert 0 <= line["healthy_after_deadline_s"] < 10
    assert "reset-failed rvm-edge.service" in calls(device) and "restart rvm-edge.service" in calls(device)
    held = json.loads((device["tmp"] / "lock-during-restart").read_text())
    assert (
        held["holder"].startswith("rvm-edge-commit-guard@") and "roll back 2.0.0 to 1.0.0" in held["holder"]
    )
    assert not device["lock"].exists(), "the dead run's lock was not released"
    assert device["state"].pending() is None
    assert device["state"].last().result == "rolled back"  # type: ignore[union-attr]
    metrics = (device["tmp"] / "textfile" / "rvm_edge_commit.prom").read_text()
    assert 'rvm_edge_commit_rollbacks_total{unit="rvm-edge.service"} 1' in metrics


def test_a_failed_service_rolls_back_before_the_deadline(device: dict[str, Any]) -> None:
    pend(device, 600)
    (device["tmp"] / "unit-state").write_text("failed\n")
    done = device["guard"]()
    assert done.returncode == 0 and "the service failed while 2.0.0 waited" in done.stdout, done.stdout
    assert Path(device["root"] / "current").resolve().name == "1.0.0"
    assert (
        json.loads((device["root"] / "deploys.jsonl").read_text().splitlines()[-1])[
            "healthy_after_deadline_s"
        ]
        < -500
    )


def test_a_newer_schema_is_migrated_down_by_the_release_that_wrote_it(device: dict[str, Any]) -> None:
    pend(device, 0.2)
    (device["tmp"] / "db-version").write_text('{"supported": 2, "database": 3}\n')
    assert device["guard"]().returncode == 0
    log = calls(device)
    assert "stop rvm-edge.service" in log
    root = device["root"]
    assert (
        f"releases/2.0.0/venv/bin/rvm-edge db migrate --config {root}/releases/2.0.0/config.yml --to 2" in log
    )


def test_when_migrating_down_fails_the_snapshot_is_restored_and_without_one_nothing_switches(
    device: dict[str, Any],
) -> None:
    pend(device, 0.2)
    (device["tmp"] / "db-version").write_text('{"supported": 2, "database": 3}\n')
    (device["tmp"] / "migrate-rc").write_text("1\n")
    done = device["guard"]()
    assert done.returncode == 0
    assert "no snapshot" in done.stdout and Path(device["root"] / "current").resolve().name == "2.0.0"
    assert json.loads((device["root"] / "deploys.jsonl").read_text().splitlines()[-1])["result"].startswith(
        "failed:"
    )

    device["root"].joinpath("deploys.jsonl").unlink()
    pend(device, 0.2)
    snapshots = device["tmp"] / "snapshots"
    snapshots.mkdir()
    (snapshots / "schema2-before-2.0.0.sqlite3").write_text("db")
    assert device["guard"]().returncode == 0
    assert (
        f"releases/1.0.0/venv/bin/rvm-edge db restore --config {device['root']}/releases/1.0.0/config.yml {snapshots}"
        in calls(device)
    )
    assert Path(device["root"] / "current").resolve().name == "1.0.0"


def test_a_release_without_its_config_is_never_switched_to(device: dict[str, Any]) -> None:
    """Each release starts with the config rendered for it (its engines): without one it could not start,
    so neither the guard nor the play's go-back moves the database or `current` to it."""
    (device["root"] / "releases" / "1.0.0" / "config.yml").unlink()
    done = device["guard"]("go-back", "--to", "1.0.0", "--from", "2.0.0")
    message = json.loads(done.stdout)["msg"]
    assert done.returncode == 1 and "release 1.0.0 has no config" in message and "deploy 1.0.0" in message
    assert "db " not in calls(device), "the database was touched before the target's config was checked"
    pend(device, 0.2)
    assert device["guard"]().returncode == 0
    assert Path(device["root"] / "current").resolve().name == "2.0.0"
    line = json.loads((device["root"] / "deploys.jsonl").read_text().splitlines()[-1])
    assert line["result"].startswith("failed: release 1.0.0 has no config"), line
    assert "db " not in calls(device) and "restart" not in calls(device)


def test_a_manual_rollback_meanwhile_clears_the_pending_commit_without_touching_the_service(
    device: dict[str, Any],
) -> None:
    pend(device, 600)
    ModuleRun()({"root": str(device["root"]), "state": "rollback"})
    done = device["guard"]()
    assert done.returncode == 0 and "dropped the pending commit" in done.stdout
    assert "restart" not in calls(device) and device["state"].pending() is None


def test_a_damaged_record_is_left_alone_with_exit_2_and_metrics_start_at_zero(device: dict[str, Any]) -> None:
    (device["tmp"] / "state").mkdir()
    (device["tmp"] / "state" / "pending.json").write_text("{garbage")
    done = device["guard"]()
    assert done.returncode == 2 and "leaving the device alone" in done.stdout
    assert Path(device["root"] / "current").resolve().name == "2.0.0"
    assert device["guard"]("metrics").returncode == 0
    metrics = (device["tmp"] / "textfile" / "rvm_edge_commit.prom").read_text()
    assert 'rvm_edge_commit_rollbacks_total{unit="rvm-edge.service"} 0' in metrics


def test_go_back_is_the_plays_way_back_too_and_check_mode_changes_nothing(device: dict[str, Any]) -> None:
    (device["tmp"] / "db-version").write_text('{"supported": 2, "database": 3}\n')
    checked = device["guard"]("go-back", "--to", "1.0.0", "--from", "2.0.0", "--check")
    assert checked.returncode == 0 and json.loads(checked.stdout)["changed"], checked.stdout + checked.stderr
    assert Path(device["root"] / "current").resolve().name == "2.0.0" and "migrate" not in calls(device)
    done = device["guard"]("go-back", "--to", "1.0.0", "--from", "2.0.0")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["changed"] and result["before"]["current"] == "2.0.0", done.stdout
    assert result["current"] == "1.0.0" and "migrated down to 2 by 2.0.0" in result["msg"]
    assert Path(device["root"] / "current").resolve().name == "1.0.0"
    assert "restart" not in calls(device), "go-back leaves the restart to the play"
    again = json.loads(device["guard"]("go-back", "--to", "1.0.0", "--from", "1.0.0").stdout)
    assert not again["changed"]
    missing = device["guard"]("go-back", "--to", "9.9.9", "--from", "1.0.0")
    assert missing.returncode == 1 and "9.9.9" in json.loads(missing.stdout)["msg"]
    assert "releases/9.9.9" not in calls(device), "the database was touched before the target was checked"


def test_the_self_healing_unit_steps_aside_while_a_commit_is_pending(tmp_path: Path) -> None:
    """rvm-edge-recover (OnFailure=) must not restart a failed release the guard is about to roll back."""
    import jinja2

    template = REPO / "roles" / "rvm_edge" / "templates" / "rvm-edge-recover.sh.j2"
    script = tmp_path / "rvm-edge-recover"
    script.write_text(
        jinja2.Template(template.read_text()).render(
            ansible_managed="test",
            _rvm_edge_service="rvm-edge",
            _rvm_edge_recovery_state_dir=str(tmp_path / "state"),
            rvm_edge_textfile_dir=str(tmp_path),
            rvm_edge_recovery_delay_s=2,
            rvm_edge_recovery_max_delay_s=20,
            rvm_edge_recovery_reset_after_s=3600,
            rvm_edge_lock_path=str(tmp_path / "update.lock"),
            rvm_edge_commit_state_dir=str(tmp_path / "commit"),
        )
    )
    script.chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\necho failed\n')
    (tmp_path / "bin" / "systemctl").chmod(0o755)
    (tmp_path / "commit").mkdir()
    (tmp_path / "commit" / "pending.json").write_text("{}")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "STATE_DIRECTORY": str(tmp_path / "state")}
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "rvm-edge-commit-guard rolls it back" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "start" not in (tmp_path / "calls").read_text()
