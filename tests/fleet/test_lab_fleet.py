"""The whole lab fleet, end to end: up, converge, converge again, down.

This is the issue's "done when" as a test: `site.yml` converges every lab host, a second run
changes nothing, `lab up` twice changes nothing, and `lab down` removes the lab's containers,
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


def lab_hosts() -> list[str]:
    out = sh(["ansible-inventory", "-i", "inventories/lab", "--list"]).stdout
    data = json.loads(out)
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
