"""The converge fast path end to end through ansible-playbook, on this machine (a local "host").

The project's own converge_check.yml and converge_record.yml around one play that writes a config
file, with the rvm_converge callback enabled as ansible.cfg enables it. What an operator sees: the
second run skips the host, and anything that would make a real converge act (an edit on the host, a
new extra var, --full) brings the host back into the run, which repairs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLAY = """\
- name: Converge fast path
  ansible.builtin.import_playbook: {root}/playbooks/converge_check.yml

- name: The host's configuration
  hosts: all
  gather_facts: false
  pre_tasks:
    - name: Skip this host when its last converge still holds
      ansible.builtin.meta: end_host
      when: inventory_hostname in groups['rvm_converge_current'] | default([])
  tasks:
    - name: Write the config
      ansible.builtin.copy:
        content: "port: {{{{ port | default(8080) }}}}\\n"
        dest: "{{{{ out }}}}/app.conf"
        mode: "0640"
    - name: Seed the service's database (then the service's own)
      ansible.builtin.copy:
        content: "seed\n"
        dest: "{{{{ out }}}}/app.db"
        mode: "0600"
        force: false

- name: Converge record
  ansible.builtin.import_playbook: {root}/playbooks/converge_record.yml
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project in project/; what the runs write (the host's side) beside it, outside the digest."""
    (tmp_path / "out").mkdir()
    (tmp_path / "project").mkdir()
    tmp_path = tmp_path / "project"
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\n"
        f"library = {ROOT / 'library'}\n"
        f"module_utils = {ROOT / 'library' / 'module_utils'}\n"
        f"callback_plugins = {ROOT / 'plugins' / 'callback'}\n"
        "callbacks_enabled = rvm_converge\n"
        "gathering = smart\n"
        "stdout_callback = ansible.builtin.default\n"
        "retry_files_enabled = false\n"
    )
    (tmp_path / "hosts.ini").write_text(
        f"edge-1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    (tmp_path / "site.yml").write_text(PLAY.format(root=ROOT))
    return tmp_path


def playbook(project: Path, *extra: str) -> str:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(project.parent / "ansible-tmp"),
    }
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "hosts.ini", "site.yml"]
    host = f"rvm_converge_record_path={record_path(project)} out={project.parent / 'out'}"
    proc = subprocess.run(
        [*cmd, "-e", host, *extra], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout


def record_path(project: Path) -> Path:
    return project.parent / "state" / "converge.json"


def converge(project: Path, *extra: str) -> tuple[str, dict]:
    """ansible-playbook site.yml: its output and the host's record afterwards."""
    stdout = playbook(project, *extra)
    return stdout, json.loads(record_path(project).read_text())


def ran(stdout: str) -> bool:
    return "TASK [Write the config]" in stdout


def test_a_second_run_skips_the_host_and_drift_brings_it_back(project: Path) -> None:
    first, record = converge(project)
    assert ran(first) and "no converge record" in first
    conf = str(project.parent / "out" / "app.conf")
    assert conf in record["files"]

    second, again = converge(project)
    assert not ran(second), second
    assert "0 to converge, 1 current" in second
    assert again["recorded_at"] == record["recorded_at"]  # a skip keeps the record's age
    assert str(project.parent / "out" / "app.db") not in record["files"]
    (project.parent / "out" / "app.db").write_text("the service's rows\n")  # its own writes
    assert "0 to converge, 1 current" in converge(project)[0]

    Path(conf).write_text("port: 1\n")  # an edit by hand
    third, _ = converge(project)
    assert ran(third) and f"drift: {conf}" in third
    assert Path(conf).read_text() == "port: 8080\n"
    assert not ran(converge(project)[0])


def test_new_extra_vars_or_full_converge_the_host(project: Path) -> None:
    converge(project)
    changed, _ = converge(project, "-e", "port=9090")
    assert ran(changed) and "intent changed" in changed
    assert (project.parent / "out" / "app.conf").read_text() == "port: 9090\n"
    forced, _ = converge(project, "-e", "port=9090", "-e", "rvm_converge_force=true")
    assert ran(forced) and "full converge asked for" in forced
    assert not ran(converge(project, "-e", "port=9090")[0])


def test_check_mode_and_tagged_runs_keep_no_record(project: Path) -> None:
    assert ran(playbook(project, "--check"))
    assert ran(playbook(project, "--skip-tags", "nothing"))
    assert not record_path(project).exists()
    converge(project)
    Path(project.parent / "out" / "app.conf").write_text("port: 1\n")
    assert "drift" in playbook(project, "--check")
    assert record_path(project).exists()  # check mode keeps the record it found stale
