"""rvm_release run the way production runs it: ansible-playbook, AnsiballZ, the device's Python 3.10.

The in-process tests cover the logic; this one proves the module is packaged correctly (its
module_utils are found through the module_utils path and shipped with it), that its argument
spec, check mode and diff work through Ansible, and that it runs on Python 3.10 as on JetPack 6.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from device_python import device_python
from rvm_release_helpers import LIBRARY, MODULE_UTILS, make_bundle, sha256

PLAYBOOK = Path(__file__).parent / "playbooks" / "rvm_release_flow.yml"


def _ansible_playbook() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if found is None:
        pytest.skip("ansible-playbook is not installed")
    return found


def test_deploy_and_rollback_through_ansible_playbook(tmp_path: Path) -> None:
    interpreter = device_python("rvm_release through ansible-playbook")
    bundles = tmp_path / "bundles"
    v1 = make_bundle(bundles, "1.0.0")
    v2 = make_bundle(bundles, "2.0.0")
    arm = make_bundle(bundles, "2.1.0", "aarch64")
    Path(f"{v1}.sha256").write_text(sha256(v1.read_bytes()))
    env = {
        **os.environ,
        "ANSIBLE_LIBRARY": str(LIBRARY),
        "ANSIBLE_MODULE_UTILS": str(MODULE_UTILS),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),  # keep the repository's ansible.cfg out of it
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
    }
    extra = (
        f"rvm_root={tmp_path / 'opt'} bundle_v1={v1} bundle_v2={v2} bundle_arm={arm} "
        f"ansible_python_interpreter={interpreter}"
    )
    command = [_ansible_playbook(), "-i", "localhost,", "-c", "local", "-e", extra, str(PLAYBOOK)]

    proc = subprocess.run(
        command, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.readlink(tmp_path / "opt" / "current") == "releases/1.0.0"
