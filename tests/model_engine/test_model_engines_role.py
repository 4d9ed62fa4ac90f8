"""roles/model_engines through ansible-playbook: every model of a release gets a verified engine before
the switch, a second run and a code-only release build nothing, check mode writes nothing, and a model
that is not the manifest's stops the play before any engine is written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ansible.module_utils.model_engine_core import native_bf16
from model_engine_helpers import APP_PYTHON, LAB_MODELS, LIBRARY, MANIFEST, MODULE_UTILS, REPO, TRTEXEC, tree

PLAYBOOK = Path(__file__).parent / "playbooks" / "model_engines_role.yml"
DETECTORS = [m for m in MANIFEST["models"] if m["role"] == "detector"]


def make_release(root: Path, version: str, tamper: bool = False) -> Path:
    """A release directory as rvm_release unpacks it: models/ with the manifest and the ONNX files."""
    models = root / "releases" / version / "models"
    models.mkdir(parents=True)
    manifest = {"schema": 1, "models": DETECTORS}
    (models / "manifest.json").write_text(json.dumps(manifest))
    for m in DETECTORS:
        shutil.copyfile(LAB_MODELS / m["file"], models / m["file"])
    if tamper:
        with open(models / DETECTORS[0]["file"], "ab") as f:
            f.write(b"\0")
    return models.parent


def play(
    tmp_path: Path, release: Path, backend: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "ANSIBLE_LIBRARY": str(LIBRARY),
        "ANSIBLE_MODULE_UTILS": str(MODULE_UTILS),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "LAB_JETSON_CALLS": str(tmp_path / "calls.jsonl"),
    }
    variables = {
        "release": str(release),
        "venv_python": str(APP_PYTHON),
        "engines": str(tmp_path / "engines"),
        "backend": backend,
        "trtexec": str(TRTEXEC),
        "out": str(tmp_path / "built.json"),
        "ansible_python_interpreter": str(APP_PYTHON),  # the device's Python 3.10
    }
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    cmd = [playbook, "-i", "localhost,", "-c", "local", "-e", json.dumps(variables), *extra, str(PLAYBOOK)]
    started = time.monotonic()
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    return proc, time.monotonic() - started


def changed(proc: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"changed=(\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return int(match.group(1))


def test_engines_built_once_and_shared_by_a_code_only_release(tmp_path: Path) -> None:
    first, _ = play(tmp_path, make_release(tmp_path, "1.0.0"), "openvino")
    assert first.returncode == 0, first.stdout + first.stderr
    built = json.loads((tmp_path / "built.json").read_text())
    assert sorted(built) == sorted(m["name"] for m in DETECTORS)
    assert all(b["action"] == "build" and Path(b["engine"]).is_file() for b in built.values())
    assert built["rvm-lab-yolo11n-320-int8"]["precision"] == "int8"  # the QDQ model keeps int8
    # OpenVINO's default is auto: the engine is bf16 where this CPU has bf16 instructions, else fp32,
    # and what the role records (what rvm_edge's config and the verify step get) is that choice
    here = "bf16" if native_bf16(Path("/proc/cpuinfo").read_text()) else "fp32"
    assert built["rvm-lab-yolo11n-320"]["precision"] == here
    detector_key = json.loads((Path(built["rvm-lab-yolo11n-320"]["engine"]).parent / "key.json").read_text())
    assert detector_key["fields"]["precision"] == here
    engines = tree(tmp_path / "engines")

    again, seconds = play(tmp_path, make_release(tmp_path, "1.0.1"), "openvino")
    assert again.returncode == 0 and changed(again) == 0, again.stdout
    assert all(b["action"] == "reuse" for b in json.loads((tmp_path / "built.json").read_text()).values())
    assert tree(tmp_path / "engines") == engines
    print(json.dumps({"model_engines_unchanged_run_s": round(seconds, 2), "models": len(DETECTORS)}))


def test_check_mode_reports_the_builds_and_writes_no_engine(tmp_path: Path) -> None:
    proc, _ = play(tmp_path, make_release(tmp_path, "1.0.0"), "tensorrt", "--check")
    assert proc.returncode == 0 and changed(proc) >= len(DETECTORS), proc.stdout
    assert "would build" in proc.stdout or changed(proc) > 0
    assert [p for p in (tmp_path / "engines").rglob("*") if p.is_file()] == []


def test_a_model_that_is_not_the_manifests_stops_the_play_before_any_engine(tmp_path: Path) -> None:
    proc, _ = play(tmp_path, make_release(tmp_path, "1.0.0", tamper=True), "onnxruntime")
    assert proc.returncode != 0
    assert f"{DETECTORS[0]['file']}: sha256 is" in proc.stdout and "but the manifest says" in proc.stdout
    assert [p for p in (tmp_path / "engines").rglob("*") if p.is_file()] == []


def test_no_backend_is_refused_naming_the_jetson_runtime_role(tmp_path: Path) -> None:
    proc, _ = play(tmp_path, make_release(tmp_path, "1.0.0"), "")
    assert proc.returncode != 0 and "run the jetson_runtime role first" in proc.stdout
