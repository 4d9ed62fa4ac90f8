"""jetson_runtime off a Jetson (this machine has no /etc/nv_tegra_release): the CPU backend fact, nothing
changed, check mode, and a bad backend refused. The Jetson path runs in the role's Molecule scenario."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from model_engine_helpers import REPO

PLAYBOOK = Path(__file__).parent / "playbooks" / "jetson_runtime_cpu.yml"


def play(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert not Path("/etc/nv_tegra_release").exists(), "this test needs a host that is not a Jetson"
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_NOCOLOR": "1",
    }
    out = tmp_path / "facts.json"
    cmd = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i", "localhost,", "-c", "local", "-e", f"out={out} ansible_python_interpreter={sys.executable}",
        *extra, str(PLAYBOOK),
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_cpu_host_gets_openvino_by_default_and_nothing_changes(tmp_path: Path) -> None:
    proc = play(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"changed=0 ", proc.stdout), proc.stdout
    assert json.loads((tmp_path / "facts.json").read_text()) == {"backend": "openvino", "release": ""}
    assert play(tmp_path, "--check").returncode == 0


def test_onnxruntime_when_asked_and_a_bad_backend_refused(tmp_path: Path) -> None:
    assert play(tmp_path, "-e", "jetson_runtime_cpu_backend=onnxruntime").returncode == 0
    assert json.loads((tmp_path / "facts.json").read_text())["backend"] == "onnxruntime"
    bad = play(tmp_path, "-e", "jetson_runtime_cpu_backend=tflite")
    assert bad.returncode != 0
    assert "jetson_runtime_cpu_backend is 'tflite', expected one of openvino, onnxruntime" in bad.stdout


def test_swap_is_left_alone_off_a_jetson(tmp_path: Path) -> None:
    """zram settings are for Jetsons: here even jetson_runtime_zram=disabled changes nothing."""
    before = Path("/proc/swaps").read_text()
    proc = play(tmp_path, "-e", "jetson_runtime_zram=disabled")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"changed=0 ", proc.stdout), proc.stdout
    assert not Path("/etc/default/rvm-zram").exists()
    assert not Path("/etc/systemd/system/rvm-zram.service").exists()
    assert Path("/proc/swaps").read_text() == before
