"""playbooks/enroll.yml against the Central double: an unauthorized member (listed by its node id)
becomes an authorized host under its name, with its site and an address, in the same run's
re-read inventory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from zt_helpers import NWID, REPO, TOKEN, Double


def test_enroll_authorizes_and_the_inventory_lists_the_device(tmp_path: Path, double: Double) -> None:
    source = tmp_path / "lab.zerotier.yml"
    source.write_text(
        yaml.safe_dump({"plugin": "zerotier", "api_url": f"{double.url}/api/v1", "networks": [NWID]})
    )
    command = [
        str(REPO / ".venv/bin/ansible-playbook"),
        "-i",
        str(source),
        str(REPO / "playbooks/enroll.yml"),
        "-e",
        "enroll_node_id=c1b2c3d4e5 enroll_name=rvm-lab-05 enroll_site=berlin enroll_ip=10.147.17.55",
        "-e",
        f"enroll_network={NWID} enroll_api_url={double.url}/api/v1 ansible_python_interpreter={sys.executable}",
    ]
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ZEROTIER_TOKEN": TOKEN,
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    done = subprocess.run(
        command, env=environ, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "converge it with: ansible-playbook site.yml -l rvm-lab-05" in done.stdout
    member = double.state.networks[NWID].members["c1b2c3d4e5"]
    assert (member.authorized, member.name, member.description) == (True, "rvm-lab-05", "site=berlin")
    assert member.ip_assignments == ["10.147.17.55"]
    assert TOKEN not in done.stdout + done.stderr
