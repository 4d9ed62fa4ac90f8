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
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.conf"
        mode: "0640"
    - name: Seed the service's database (then the service's own)
      ansible.builtin.copy:
        content: "seed\\n"
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.db"
        mode: "0600"
        force: false
    - name: Sort the host into a group made during the run (as playbooks/deploy.yml does)
      ansible.builtin.group_by:
        key: rvm_edge_in_service
      changed_when: false
    - name: Publish this host's address (as the zerotier role does)
      ansible.builtin.set_fact:
        zerotier_mgmt_address: "10.147.17.{{{{ host_number }}}}"

- name: What the hosts read of each other
  hosts: all
  gather_facts: false
  pre_tasks:
    - name: Skip this host when its last converge still holds
      ansible.builtin.meta: end_host
      when: inventory_hostname in groups['rvm_converge_current'] | default([])
  tasks:
    - name: Write the peers
      ansible.builtin.copy:
        content: "{{{{ groups['all'] | sort | map('extract', hostvars, 'zerotier_mgmt_address') | map('default', 'MISSING') | join(',') }}}}\\n"
        dest: "{{{{ out }}}}/{{{{ inventory_hostname }}}}.peers"
        mode: "0644"

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
        # facts gathered once per test, as the project's own ansible.cfg caches them
        "fact_caching = jsonfile\n"
        f"fact_caching_connection = {tmp_path.parent / 'facts'}\n"
        "stdout_callback = ansible.builtin.default\n"
        "retry_files_enabled = false\n"
    )
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    # edge-2 converges on every run (its fast path is off), so it shows what a converging host reads
    # of a current one (edge-1). Each host's number is its own and the peers are written sorted:
    # groups['all'] is in no fixed order once group_by has run (it lists the hosts group by group, in
    # the order the groups were made, i.e. whichever host's result came first), which made a
    # position-derived address flaky (CI rehearsal 2026-12-08: edge-2 numbered 1).
    (tmp_path / "hosts.ini").write_text(
        f"edge-1 {local} host_number=1\nedge-2 {local} host_number=2 rvm_converge_fast_path=false\n"
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
    host = (
        f"rvm_converge_record_path={project.parent}/state/{{{{ inventory_hostname }}}}.json"
        f" out={project.parent / 'out'}"
    )
    proc = subprocess.run(
        [*cmd, "-e", host, *extra], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout


def record_path(project: Path, host: str = "edge-1") -> Path:
    return project.parent / "state" / f"{host}.json"


def out(project: Path, name: str) -> Path:
    return project.parent / "out" / name


def converge(project: Path, *extra: str) -> tuple[str, dict]:
    """ansible-playbook site.yml: its output and edge-1's record afterwards."""
    stdout = playbook(project, *extra)
    return stdout, json.loads(record_path(project).read_text())


def ran(stdout: str, host: str = "edge-1") -> bool:
    """Did ``host`` run the config play's first task (rather than skip the run)?"""
    section = stdout.split("TASK [Write the config]", 1)[-1].split("TASK [", 1)[0]
    return "TASK [Write the config]" in stdout and f"[{host}]" in section


def test_a_second_run_skips_the_host_and_drift_brings_it_back(project: Path) -> None:
    first, record = converge(project)
    assert ran(first) and "no converge record" in first
    conf = str(out(project, "edge-1.conf"))
    assert conf in record["files"]
    assert str(out(project, "edge-1.db")) not in record["files"]  # a seed is the service's own

    second, again = converge(project)
    assert not ran(second), second
    assert ran(second, "edge-2")  # its fast path is off
    assert "1 to converge, 1 current" in second
    assert again["recorded_at"] == record["recorded_at"]  # a skip keeps the record's age
    out(project, "edge-1.db").write_text("the service's rows\n")  # its own writes
    assert not ran(converge(project)[0])

    Path(conf).write_text("port: 1\n")  # an edit by hand
    third, _ = converge(project)
    assert ran(third) and f"drift: {conf}" in third
    assert Path(conf).read_text() == "port: 8080\n"
    assert not ran(converge(project)[0])


def test_a_current_hosts_published_variables_reach_the_hosts_that_converge(project: Path) -> None:
    """edge-2 converges while edge-1 is current: it still reads edge-1's address (handed back from
    edge-1's record), so what it renders does not change."""
    converge(project)
    assert out(project, "edge-2.peers").read_text() == "10.147.17.1,10.147.17.2\n"
    stdout, record = converge(project)
    assert not ran(stdout) and ran(stdout, "edge-2")
    assert record["published"] == {"zerotier_mgmt_address": "10.147.17.1"}
    assert out(project, "edge-2.peers").read_text() == "10.147.17.1,10.147.17.2\n"
    assert "changed: [edge-2]" not in stdout.split("TASK [Write the peers]", 1)[-1].split("TASK [", 1)[0]


def test_new_extra_vars_or_full_converge_the_host(project: Path) -> None:
    converge(project)
    changed, _ = converge(project, "-e", "port=9090")
    assert ran(changed) and "intent changed" in changed
    assert out(project, "edge-1.conf").read_text() == "port: 9090\n"
    forced, _ = converge(project, "-e", "port=9090", "-e", "rvm_converge_force=true")
    assert ran(forced) and "full converge asked for" in forced
    assert not ran(converge(project, "-e", "port=9090")[0])


def test_check_mode_and_tagged_runs_keep_no_record(project: Path) -> None:
    assert ran(playbook(project, "--check"))
    assert ran(playbook(project, "--skip-tags", "nothing"))
    assert not record_path(project).exists()
    converge(project)
    out(project, "edge-1.conf").write_text("port: 1\n")
    assert "drift" in playbook(project, "--check")
    assert record_path(project).exists()  # check mode keeps the record it found stale
