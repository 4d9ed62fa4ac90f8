"""Last in the session (name order): the fleet converged by every test before, a second `site.yml`
(run by `rvm-fleet converge` inside the execution environment `make ee` built, through the ZeroTier
inventory plugin, as AWX would run it) changes nothing, check mode reports nothing (RVM_FLEET_CHECK_MODE=1; each role's Molecule scenario
checks it in CI), the fleet deploy scenario (Molecule, molecule/deploy) runs
on this converged lab, `lab up` again changes nothing, and `lab down` removes the lab's containers,
network and volumes and nothing else.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import time
from pathlib import Path

from fleet_helpers import FIGURES, LABCTL, ROOT, Recap, devices, lab_hosts, opt_in, playbook, sh

SENTINEL = "rvm-fleet-test-sentinel"
EE_IMAGE = os.environ.get("RVM_FLEET_TEST_EE", "localhost/rvm-ee:latest")  # make ee (fleet-test needs it)
ZT_INVENTORY = "inventories/lab-zerotier"
CONVERGE_SUMMARY = re.compile(r'"msg": "(\d+) to converge, (\d+) current: (\{.*\})"')


def fast_converge(*extra: str) -> tuple[int, int, dict[str, str], Recap, float]:
    """`ansible-playbook -i inventories/lab-zerotier site.yml` on the control node (the same intent as
    the EE run's records): pending, current, each host's reason, the recap and the seconds."""
    recap, stdout, elapsed = playbook("-i", ZT_INVENTORY, *extra)
    found = CONVERGE_SUMMARY.search(stdout)
    assert found, stdout[-3000:]
    reasons = ast.literal_eval(found.group(3))
    return int(found.group(1)), int(found.group(2)), reasons, recap, elapsed


def one_of_each_kind() -> list[str]:
    """Every server and the first device: the lab's devices differ only in their names and addresses,
    so one stands for the three and every task of the site still runs (the second full converge on
    all six hosts took ~370-380 s here, on these four 196-251 s: docs/ci.md)."""
    others = devices()[1:]  # one ansible-inventory call, not one per host
    return [h for h in lab_hosts() if h not in others]


def test_second_run_in_the_execution_environment_changes_nothing(fleet: Recap) -> None:
    """site.yml again, as AWX runs it: in the EE container (ansible-runner process isolation on
    podman), hosts and groups from ZeroTier Central through the plugin, ssh to their addresses.
    Nothing changes on any host (one of each kind), so the EE converges exactly as the control venv
    did, and their records are the ZeroTier inventory's (the fast-path tests below run on them)."""
    rvm_fleet = str(Path(sys.executable).parent / "rvm-fleet")
    hosts = one_of_each_kind()
    limit = ",".join(hosts)
    cmd = [rvm_fleet, "converge", "--full", "--ee", EE_IMAGE, "-i", ZT_INVENTORY, "-l", limit, "--json"]
    start = time.monotonic()
    proc = sh(cmd, timeout=1500)
    FIGURES["second_converge_ee_s"] = round(time.monotonic() - start, 1)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    artifacts = ROOT / ".cache" / "rvm-fleet" / "artifacts" / record["ident"]
    stdout = (artifacts / "stdout").read_text(errors="replace")
    runner = json.loads((artifacts / "command").read_text())["command"]
    assert runner[:2] == ["podman", "run"] and EE_IMAGE in runner, runner
    verdicts = record["detail"]["converge"]  # --full: no host skipped, each says why
    assert sorted(verdicts) == sorted(hosts), verdicts
    assert all(not v["current"] and v["reason"].startswith("full converge") for v in verdicts.values())
    stats = {h: s for h, s in record["detail"]["stats"].items() if h != "localhost"}
    assert sorted(stats) == sorted(hosts), stats
    changed = {host: s["changed"] for host, s in stats.items() if s.get("changed")}
    assert not changed, f"not idempotent: {changed}\n" + "\n".join(
        line for line in stdout.splitlines() if line.startswith("changed:")
    )
    assert proc.returncode == 0 and record["status"] == "successful", stdout[-4000:]


def test_a_no_change_converge_skips_every_host(fleet: Recap) -> None:
    """Right after a full converge: every host's record holds, so site.yml ends at once for all of
    them; the figures are the no-change converge's seconds for 1 and 4 hosts (those the EE converged;
    issue 14's budget: <= 30 s for the six-host lab, which the scale stage of `make prodtest`
    measures up to 13 hosts) and the cost of one more host."""
    hosts = one_of_each_kind()
    seconds = {}
    for limit, count in (("rvm-lab-01", 1), (",".join(hosts), len(hosts))):
        pending, current, reasons, recap, elapsed = fast_converge("-l", limit)
        assert (pending, current) == (0, count), reasons
        assert all(r["changed"] == 0 for r in recap.values()), recap
        seconds[count] = round(elapsed, 1)
    FIGURES["no_change_converge_s"] = seconds
    FIGURES["no_change_converge_s_per_extra_host"] = round(
        (seconds[len(hosts)] - seconds[1]) / (len(hosts) - 1), 2
    )


def test_drift_by_hand_brings_only_that_host_back_and_is_repaired(fleet: Recap) -> None:
    """An operator edits a file the converge manages on one host: the next no-change converge finds
    the drift there (and nowhere else), converges that host in full, which puts the file back, and
    records it again (on the hosts the EE converged)."""
    host = "rvm-backup"
    hosts = one_of_each_kind()
    managed = "/etc/ssh/sshd_config.d/50-rvm-hardening.conf"
    before = sh(["podman", "exec", host, "sha1sum", managed]).stdout.split()[0]
    sh(["podman", "exec", host, "sh", "-c", f"echo '# by hand' >> {managed}"])
    pending, current, reasons, recap, elapsed = fast_converge("-l", ",".join(hosts))
    FIGURES["drift_converge_s"] = round(elapsed, 1)
    assert (pending, current) == (1, len(hosts) - 1), reasons
    assert reasons[host] == f"drift: {managed}", reasons
    assert recap[host]["changed"] > 0 and all(
        r["changed"] == 0 for h, r in recap.items() if h not in (host, "localhost")
    ), recap
    assert sh(["podman", "exec", host, "sha1sum", managed]).stdout.split()[0] == before
    assert fast_converge("-l", host)[:2] == (0, 1)


def test_a_device_run_refreshes_the_servers_facts_before_they_expire(fleet: Recap) -> None:
    """`deploy.yml -l <device>` when the fact cache holds the platform simulator's facts but they
    are 59 minutes old (ansible.cfg keeps them an hour): the devices' settings name its address, and
    Ansible drops a host's facts that expire in the middle of a run, so the run gathers them again at
    its start (the cache good for another hour), and changes nothing. The 20-device scale runs failed
    on "'dict' has no attribute 'default_ipv4'": with the facts an hour old at the start, then with
    facts known at the start that expired during the run's third batch."""
    cached = sorted((ROOT / ".cache" / "facts").glob("*rvm-platform"))
    assert cached, "no cached facts of rvm-platform after the converge"
    old = time.time() - 59 * 60
    for path in cached:
        os.utime(path, (old, old))
    recap, stdout, _ = playbook("-l", devices()[1], path="playbooks/deploy.yml")
    assert "ok: [" + devices()[1] + " -> rvm-platform]" in stdout, stdout[-3000:]
    assert recap[devices()[1]]["changed"] == 0, recap
    ages = [time.time() - path.stat().st_mtime for path in (ROOT / ".cache" / "facts").glob("*rvm-platform")]
    assert ages and max(ages) < 30 * 60, f"the platform simulator's cached facts not refreshed: ages {ages} s"


def test_the_zerotier_plugin_is_an_awx_inventory_source(fleet: Recap) -> None:
    """As AWX updates an inventory source from a project: ansible-inventory in the EE, the token from
    a credential's environment variable (none in the source file), the lab's hosts and groups out."""
    import ansible_runner

    source = ROOT / ".cache" / "awx-source" / "fleet.zerotier.yml"
    source.parent.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "inventories" / "lab-zerotier" / "lab.zerotier.yml").read_text()
    source.write_text(text.replace("token_file: ../../.lab/zerotier-central-token", ""))
    token = (ROOT / ".lab" / "zerotier-central-token").read_text().strip()
    out, err = ansible_runner.get_inventory(
        action="list",
        inventories=[str(source)],
        response_format="json",
        process_isolation=True,
        process_isolation_executable="podman",
        container_image=EE_IMAGE,
        container_volume_mounts=[f"{ROOT}:{ROOT}"],
        container_options=["--network=host", "--user=0"],
        envvars={"ZEROTIER_TOKEN": token, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        quiet=True,
    )
    assert isinstance(out, dict), err
    hosts = sorted(out["_meta"]["hostvars"])
    assert hosts == sorted(lab_hosts()), (hosts, err)
    for group in ("rvm_devices", "monitoring_servers", "backup_servers", "platform_simulators"):
        assert out[group]["hosts"], (group, out.get(group))
    assert token not in json.dumps(out)


@opt_in(
    "RVM_FLEET_CHECK_MODE",
    "the whole site in check mode on the converged lab",
    "~5 min; every role's Molecule scenario runs its own check stage in CI",
)
def test_check_mode_reports_no_change_on_a_converged_fleet(fleet: Recap) -> None:
    recap, _, _ = playbook("--check", "--diff", "-e", "rvm_converge_force=true")  # every task, no fast path
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
    # the devices' data partitions: unmounted (their loop devices freed with them) and deleted
    data = str(ROOT / ".cache" / "lab-data")
    mounted = [line for line in Path("/proc/mounts").read_text().splitlines() if f" {data}/" in line]
    assert mounted == [], f"lab data partitions still mounted: {mounted}"
    assert not list((ROOT / ".cache" / "lab-data").glob("*.ext4")), "lab data partition files left behind"
    try:
        assert sh(["podman", "container", "exists", SENTINEL]).returncode == 0, (
            "down removed a container it did not make"
        )
    finally:
        sh(["podman", "rm", "--force", SENTINEL])
