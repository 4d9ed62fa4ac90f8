"""Render the monitoring_server role's templates for a given inventory with Ansible itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring_server"
LAB_VARS = ROOT / "inventories" / "lab" / "group_vars" / "monitoring_servers.yml"
TEMPLATES = ["prometheus.yml", "alertmanager.yml", "rvm_settings.yml", "rvm_extra.yml"]

PLAYBOOK = """
- hosts: monitoring_servers
  connection: local
  gather_facts: false
  vars_files: [{defaults}, {internal}, {lab}]
  vars:
    role_path: {role}
  tasks:
    - ansible.builtin.template:
        src: "{{{{ role_path }}}}/templates/{{{{ item }}}}.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0600"
      loop: {templates}
"""


def render(out: Path, inventory: dict, extra_vars: dict) -> None:
    """Render the templates into `out` as the role would for the first monitoring server.

    The role's defaults, then the lab's group_vars, then `extra_vars` (highest) apply."""
    (out / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (out / "play.yml").write_text(
        PLAYBOOK.format(
            defaults=ROLE / "defaults" / "main.yml",
            internal=ROLE / "vars" / "main.yml",
            lab=LAB_VARS,
            role=ROLE,
            templates=json.dumps(TEMPLATES),
        )
    )
    (out / "ansible.cfg").write_text("[defaults]\nfact_caching = memory\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(out / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    extra = {"out": str(out), "ansible_python_interpreter": sys.executable, **extra_vars}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(out / "inventory.yml"),
            str(out / "play.yml"),
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
