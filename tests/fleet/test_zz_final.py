"""Last in the session (name order): the fleet converged by every test before, a second `site.yml`
changes nothing, check mode reports nothing (RVM_FLEET_CHECK_MODE=1; each role's Molecule scenario
checks it in CI), the fleet deploy scenario (Molecule, molecule/deploy) runs
on this converged lab, `lab up` again changes nothing, and `lab down` removes the lab's containers,
network and volumes and nothing else.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fleet_helpers import FIGURES, LABCTL, Recap, lab_hosts, opt_in, playbook, sh

SENTINEL = "rvm-fleet-test-sentinel"


def test_second_run_changes_nothing(fleet: Recap) -> None:
    recap, stdout, elapsed = playbook()
    FIGURES["second_converge_s"] = round(elapsed, 1)
    changed = {host: r["changed"] for host, r in recap.items() if r["changed"]}
    assert not changed, f"not idempotent: {changed}\n" + "\n".join(
        line for line in stdout.splitlines() if line.startswith("changed:")
    )


@opt_in(
    "RVM_FLEET_CHECK_MODE",
    "the whole site in check mode on the converged lab",
    "~5 min; every role's Molecule scenario runs its own check stage in CI",
)
def test_check_mode_reports_no_change_on_a_converged_fleet(fleet: Recap) -> None:
    recap, _, _ = playbook("--check", "--diff")
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap


def test_deploy_scenario_on_the_converged_fleet(fleet: Recap, tmp_path: Path) -> None:
    """molecule/deploy (canary and batches, a broken release rolled back, rollback, update lock) on this
    lab: after the changed=0 and check-mode runs, since it leaves every device on its own 1.0.0. Only
    its bundles are prepared here (the lab is converged) and the session's last test takes the lab down,
    so CI brings the lab up and converges it once for both."""
    molecule = str(Path(sys.executable).parent / "molecule")  # the control venv's, beside pytest
    # A fresh ephemeral directory (state, bundles, reports): the sequence has no destroy first (that
    # would take the lab down), so a state an earlier run left would make molecule skip create and
    # prepare. (Not `molecule reset`: it removes every molecule-made container on the machine.)
    env = [
        f"MOLECULE_EPHEMERAL_DIRECTORY={tmp_path / 'molecule-deploy'}",
        "RVM_DEPLOY_PREPARE=prepare_converged.yml",
    ]
    start = time.monotonic()
    proc = sh(["env", *env, molecule, "test", "-s", "deploy", "--destroy=never"], timeout=1500)
    FIGURES["deploy_scenario_s"] = round(time.monotonic() - start, 1)
    figures = proc.stdout.find("TASK [Show the figures]")  # deploy time per batch, rollback per device
    print(proc.stdout[figures : figures + 3000] if figures >= 0 else proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


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
