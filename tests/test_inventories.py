"""The example inventories (inventories/production, inventories/staging) are complete enough to run.

An operator copies one of them to start a real fleet, so each must pass the hardening role's
preflight as it stands: control nodes or a management network for the firewall, operators whose keys
ssh-keygen accepts (Ansible's own login user among them), a valid maintenance window for every site.
`--syntax-check` would not notice any of that; this runs the preflight tasks themselves, in check
mode, with every host of the inventory resolving its own variables. The hosts are not reachable
from here, so the connection is local: the only task that reads the host (its capability set, for
nftables) then reads this machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLES = ["production", "staging"]
PLAY = (
    "- hosts: all\n  gather_facts: false\n  tasks:\n"
    "    - ansible.builtin.include_role: {name: hardening, tasks_from: preflight}\n"
    "    - ansible.builtin.debug: {msg: 'window={{ hardening_maintenance_window }}'}\n"
)
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def inventory_hosts(name: str) -> list[str]:
    proc = run([str(BIN / "ansible-inventory"), "-i", f"inventories/{name}", "--list"])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    return sorted(data["_meta"]["hostvars"])


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300, check=False)


def preflight(name: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The hardening preflight against every host of inventories/<name>, check mode, local."""
    play = tmp_path / "preflight.yml"
    play.write_text(PLAY)
    return run(
        [
            str(BIN / "ansible-playbook"), "-i", f"inventories/{name}", str(play), "--check",
            "-c", "local", "-e", "ansible_become=false",
            "-e", json.dumps({"ansible_python_interpreter": sys.executable}), *extra,
        ]
    )  # fmt: skip


# Each site's own maintenance window, as the hosts resolve it.
WINDOWS = {
    "production": {"rvm-prd-0001": "02:00-04:00", "rvm-prd-0101": "03:30-05:30"},
    "staging": {"rvm-stg-0001": "14:00-15:00"},
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_inventory_passes_the_hardening_preflight(name: str, tmp_path: Path) -> None:
    hosts = inventory_hosts(name)
    assert len(hosts) >= 4, hosts  # devices, a monitoring server, a backup server
    proc = preflight(name, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = {m[1]: int(m[5]) for m in RECAP.finditer(proc.stdout)}
    assert sorted(recap) == hosts
    assert not any(recap.values()), recap
    # the ssh-user check ran (the inventories set ansible_user) and did not skip
    assert "Refuse an ssh user that the hardened sshd would shut out" in proc.stdout
    windows = dict(re.findall(r"ok: \[(\S+)\] => \{\s+\"msg\": \"window=(\S+)\"", proc.stdout))
    assert WINDOWS[name].items() <= windows.items(), windows


@pytest.mark.parametrize("name", EXAMPLES)
def test_preflight_reads_the_inventory(name: str, tmp_path: Path) -> None:
    """The same run stops, by name, when the inventory loses what it must name (so the test above
    passes because of the inventory, not in spite of it)."""
    nobody = {"hardening_firewall_control_nodes": [], "hardening_firewall_mgmt_networks": []}
    proc = preflight(name, tmp_path, "-e", json.dumps(nobody))
    assert proc.returncode != 0
    assert (
        "hardening_firewall_control_nodes and hardening_firewall_mgmt_networks are both empty" in proc.stdout
    )
    proc = preflight(name, tmp_path, "-e", json.dumps({"hardening_operators": []}))
    assert proc.returncode != 0
    assert "Ansible logs in as 'rvm-admin'" in proc.stdout
