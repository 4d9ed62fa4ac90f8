"""Self-healing (issue 11 §3): systemd's start limit no longer leaves rvm-edge failed for good.

A kill -9 burst past StartLimitBurst leaves the unit `failed`; OnFailure= starts rvm-edge-recover, which
waits a cool-down, resets the failed state and starts the service again, and counts the recovery in
node-exporter's textfile directory. The fleet test does nothing but kill and watch.

The first tests run the recovery script itself (rendered from the role's template) with a stand-in
`systemctl` and `sleep` on PATH: the cool-down sequence, its cap and reset, and the persisted count,
in a second instead of minutes of real back-off; they need no lab.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import jinja2
import pytest
from fleet_helpers import FIGURES, ROOT, Recap, devices, readyz, sh

TEMPLATE = ROOT / "roles" / "rvm_edge" / "templates" / "rvm-edge-recover.sh.j2"
PROM = "/var/lib/prometheus/node-exporter/rvm_edge_recovery.prom"


@pytest.fixture
def recover(tmp_path: Path):
    """The rendered script, and a runner with a stand-in systemctl (answers a state, records calls) and sleep."""
    script = tmp_path / "rvm-edge-recover"
    script.write_text(
        jinja2.Template(TEMPLATE.read_text()).render(
            ansible_managed="test",
            _rvm_edge_service="rvm-edge",
            _rvm_edge_recovery_state_dir=str(tmp_path / "state"),
            rvm_edge_textfile_dir=str(tmp_path / "textfile"),
            rvm_edge_recovery_delay_s=2,
            rvm_edge_recovery_max_delay_s=20,
            rvm_edge_recovery_reset_after_s=3600,
            rvm_edge_lock_path=str(tmp_path / "update.lock"),
        )
    )
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "textfile").mkdir()
    (tmp_path / "unit-state").write_text("failed\n")
    (bin_dir / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n'
        f'if [ "$1" = show ]; then cat {tmp_path}/unit-state; fi\n'
        f'if [ "$1" = start ]; then echo activating > {tmp_path}/unit-state; fi\n'
    )
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "$1" >> {tmp_path}/slept\n')
    for tool in ("systemctl", "sleep"):
        (bin_dir / tool).chmod(0o755)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE_DIRECTORY": str(tmp_path / "state")}
        return subprocess.run(
            [str(script), *args], env=env, capture_output=True, text=True, timeout=30, check=False
        )

    return tmp_path, run


def prom_value(text: str, name: str) -> float:
    found = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
    assert found, f"{name} missing from\n{text}"
    return float(found[1])


def test_the_cool_down_doubles_up_to_its_maximum_and_the_count_persists(recover) -> None:
    tmp, run = recover
    for _ in range(6):
        (tmp / "unit-state").write_text("failed\n")
        done = run()
        assert done.returncode == 0, done.stderr
    assert (tmp / "slept").read_text().split() == ["2", "4", "8", "16", "20", "20"]
    calls = (tmp / "calls").read_text()
    assert calls.count("reset-failed rvm-edge.service") == 6
    assert calls.count("start --no-block rvm-edge.service") == 6
    metrics = (tmp / "textfile" / "rvm_edge_recovery.prom").read_text()
    assert prom_value(metrics, "rvm_edge_recoveries_total") == 6
    assert prom_value(metrics, "rvm_edge_recovery_delay_seconds") == 20
    assert abs(prom_value(metrics, "rvm_edge_last_recovery_timestamp_seconds") - time.time()) < 60


def test_a_recovery_long_after_the_last_starts_from_the_first_cool_down(recover) -> None:
    tmp, run = recover
    (tmp / "state" / "state").write_text(f"5 {int(time.time()) - 3601} 9 20\n")
    assert run().returncode == 0
    assert (tmp / "slept").read_text().split() == ["2"]
    assert (
        prom_value((tmp / "textfile" / "rvm_edge_recovery.prom").read_text(), "rvm_edge_recoveries_total")
        == 10
    )


def test_nothing_happens_when_the_unit_is_not_failed(recover) -> None:
    tmp, run = recover
    (tmp / "unit-state").write_text("active\n")
    done = run()
    assert done.returncode == 0
    assert "nothing to do" in done.stdout
    assert not (tmp / "slept").exists()
    assert "start" not in (tmp / "calls").read_text()


def test_metrics_mode_publishes_zero_before_any_recovery_and_a_bad_state_file_is_not_fatal(recover) -> None:
    tmp, run = recover
    (tmp / "state" / "state").write_text("garbage\n")
    done = run("metrics")
    assert done.returncode == 0
    assert "ignoring unreadable state file" in done.stdout
    metrics = (tmp / "textfile" / "rvm_edge_recovery.prom").read_text()
    assert prom_value(metrics, "rvm_edge_recoveries_total") == 0
    assert "# TYPE rvm_edge_recoveries_total counter" in metrics


def podman_exec(device: str, *args: str) -> str:
    proc = sh(["podman", "exec", device, *args], timeout=60)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout.strip()


def unit(device: str, prop: str) -> str:
    return podman_exec(device, "systemctl", "show", "-P", prop, "rvm-edge.service")


def recoveries(device: str) -> float:
    return prom_value(podman_exec(device, "cat", PROM), "rvm_edge_recoveries_total")


def test_a_kill_burst_past_the_start_limit_heals_itself(fleet: Recap) -> None:
    device = devices()[0]
    assert unit(device, "OnFailure") == "rvm-edge-recover.service"
    before = recoveries(device)
    start = time.monotonic()
    kills, last_killed = 0, ""
    while unit(device, "ActiveState") != "failed":
        assert time.monotonic() - start < 240, f"rvm-edge never reached failed after {kills} kills"
        pid = unit(device, "MainPID")
        if pid not in ("0", last_killed):
            sh(["podman", "exec", device, "kill", "-9", pid], timeout=60)
            kills, last_killed = kills + 1, pid
        time.sleep(0.2)
    failed_at = time.monotonic()
    # From here on nobody acts: only watch for the service to be active and ready again.
    deadline = failed_at + 180
    while True:
        assert time.monotonic() < deadline, podman_exec(
            device, "journalctl", "-u", "rvm-edge-recover", "-n", "20"
        )
        if unit(device, "ActiveState") == "active":
            proc = sh(["podman", "exec", device, "curl", "-fsS", "http://127.0.0.1:8080/readyz"], timeout=60)
            if proc.returncode == 0 and json.loads(proc.stdout).get("ready"):
                break
        time.sleep(0.5)
    healed_at = time.monotonic()
    assert readyz(device)["ready"]
    assert recoveries(device) == before + 1
    journal = podman_exec(
        device, "journalctl", "-u", "rvm-edge-recover", "--no-pager", "-n", "20", "-o", "cat"
    )
    assert "failed after its start limit" in journal and "started rvm-edge.service again" in journal
    FIGURES["self_heal_kills_until_failed"] = kills
    FIGURES["self_heal_failed_to_ready_s"] = round(healed_at - failed_at, 1)
    print(
        f"\nself-healing on {device}: {kills} kills -> failed; ready again {healed_at - failed_at:.1f} s later"
    )
