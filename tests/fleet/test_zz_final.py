"""Last in the session (name order): the fleet converged by every test before, a second `site.yml`
changes nothing, check mode reports nothing, `lab up` again changes nothing, and `lab down` removes the
lab's containers, network and volumes and nothing else.
"""

from __future__ import annotations

import time

from fleet_helpers import FIGURES, LABCTL, Recap, lab_hosts, playbook, sh

SENTINEL = "rvm-fleet-test-sentinel"


def test_second_run_changes_nothing(fleet: Recap) -> None:
    recap, stdout, elapsed = playbook()
    FIGURES["second_converge_s"] = round(elapsed, 1)
    changed = {host: r["changed"] for host, r in recap.items() if r["changed"]}
    assert not changed, f"not idempotent: {changed}\n" + "\n".join(
        line for line in stdout.splitlines() if line.startswith("changed:")
    )


def test_check_mode_reports_no_change_on_a_converged_fleet(fleet: Recap) -> None:
    recap, _, _ = playbook("--check", "--diff")
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap


def test_lab_up_twice_changes_nothing(fleet: Recap) -> None:
    start = time.monotonic()
    proc = sh([*LABCTL, "up"])
    FIGURES["lab_up_again_s"] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, proc.stderr
    assert f"lab up: {len(lab_hosts())} hosts, 0 changed" in proc.stdout


def test_down_removes_the_lab_and_nothing_else(fleet: Recap) -> None:
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
    try:
        assert sh(["podman", "container", "exists", SENTINEL]).returncode == 0, (
            "down removed a container it did not make"
        )
    finally:
        sh(["podman", "rm", "--force", SENTINEL])
