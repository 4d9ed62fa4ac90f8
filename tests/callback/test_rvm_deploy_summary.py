"""The deploy summary callback, through a real ansible-playbook run on local hosts.

Three local hosts, serial batches [1, 2] like a canary deploy; the second batch has a host that
fails after reporting, as the rvm_edge role does when its health gate fails. The summary must come
out even though the failed batch ends the run, with one row per batch and per host, and the JSON
report must carry the same figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- name: Deploy (test)
  hosts: devices
  gather_facts: false
  serial: [1, 2]
  max_fail_percentage: 0
  tasks:
    - name: Report like the rvm_edge role
      ansible.builtin.set_fact:
        rvm_edge_deploy_report:
          action: deploy
          from: "1.0.0"
          to: "2.0.0"
          result: "{{ 'failed, rolled back' if inventory_hostname == 'dev-c' else 'ok' }}"
          seconds: 12.5
          failed_after_s: "{{ 7.5 if inventory_hostname == 'dev-c' else '' }}"
          rollback_s: "{{ 3.0 if inventory_hostname == 'dev-c' else '' }}"
    - name: Fail the gate on dev-c
      ansible.builtin.fail:
        msg: health gate failed
      when: inventory_hostname == 'dev-c'

- name: A later play that a failed batch never reaches
  hosts: devices
  gather_facts: false
  tasks:
    - name: Nothing
      ansible.builtin.debug:
        msg: unreachable
"""


def run(tmp_path: Path, playbook: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    (tmp_path / "play.yml").write_text(playbook)
    (tmp_path / "hosts.ini").write_text(
        "[devices]\ndev-a\ndev-b\ndev-c\n\n[devices:vars]\nansible_connection=local\n"
        f"ansible_python_interpreter={sys.executable}\n"
    )
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "RVM_DEPLOY_REPORT": str(report),
        "ANSIBLE_CALLBACKS_ENABLED": "rvm_deploy_summary",
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(tmp_path / "hosts.ini"),
            "play.yml",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc, report


def test_summary_per_batch_and_host_even_when_a_batch_fails(tmp_path: Path) -> None:
    proc, report = run(tmp_path, PLAYBOOK)
    assert proc.returncode != 0  # the failed batch stops the run...
    assert "RVM-EDGE DEPLOY SUMMARY" in proc.stdout  # ...and the summary still comes out
    data = json.loads(report.read_text())
    assert [b["hosts"] for b in data["batches"]] == [["dev-a"], ["dev-b", "dev-c"]]
    assert [b["failed"] for b in data["batches"]] == [[], ["dev-c"]]
    assert all(b["seconds"] >= 0 for b in data["batches"])
    assert {h["host"]: h["result"] for h in data["hosts"]} == {
        "dev-a": "ok",
        "dev-b": "ok",
        "dev-c": "failed, rolled back",
    }
    summary = proc.stdout.split("RVM-EDGE DEPLOY SUMMARY")[1]
    row = next(line for line in summary.splitlines() if line.startswith("dev-c"))
    assert "1.0.0" in row and "2.0.0" in row and "rollback 3.0 s" in row


def test_no_summary_for_a_run_that_deploys_nothing(tmp_path: Path) -> None:
    playbook = (
        "- hosts: devices\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug:\n        msg: hi\n"
    )
    proc, report = run(tmp_path, playbook)
    assert proc.returncode == 0, proc.stdout
    assert "RVM-EDGE DEPLOY SUMMARY" not in proc.stdout
    assert not report.exists()
