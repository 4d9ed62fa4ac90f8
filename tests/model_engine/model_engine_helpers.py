"""Helpers for the model_engine tests: an in-process module runner and the lab model's facts.

Like tests/library, the shipped module_utils directory is appended to ``ansible.module_utils``'s
path, so the tests exercise exactly the files Ansible ships to a device. Builds for ONNX Runtime
and OpenVINO run for real in app/.venv (the runtime venv, as a release venv would); TensorRT runs
against the trtexec LAB STAND-IN in lab/jetson/bin.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import ansible.module_utils
import pytest
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "library"
MODULE_UTILS = LIBRARY / "module_utils"
if str(MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(MODULE_UTILS))
if str(LIBRARY) not in sys.path:
    sys.path.insert(0, str(LIBRARY))

import model_engine  # noqa: E402 (after the path setup above)

APP_PYTHON = REPO / "app" / ".venv" / "bin" / "python"
TRTEXEC = REPO / "lab" / "jetson" / "bin" / "trtexec"
LAB_MODELS = REPO / "app" / "models" / "lab"
MANIFEST = json.loads((LAB_MODELS / "manifest.json").read_text())
DETECTOR = next(m for m in MANIFEST["models"] if m["name"] == "rvm-lab-yolo11n-320")
DETECTOR_INT8 = next(m for m in MANIFEST["models"] if m["name"] == "rvm-lab-yolo11n-320-int8")
JETSON = "jetson:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super:L4T R36.4.3"


def model_args(entry: dict[str, Any], engines_dir: Path, **extra: Any) -> dict[str, Any]:
    """Module arguments for a manifest entry, the way roles/model_engines passes them."""
    if not APP_PYTHON.exists():
        pytest.fail(f"{APP_PYTHON} missing: run `make -C app venv` (the runtime venv the builds run in)")
    args = {
        "name": entry["name"],
        "onnx": str(LAB_MODELS / entry["file"]),
        "sha256": entry["sha256"],
        "input_shape": entry["input_shape"],
        "model_precision": entry["precision"],
        "backend": "onnxruntime",
        "engines_dir": str(engines_dir),
        "python": str(APP_PYTHON),
        "trtexec": str(TRTEXEC),
    }
    args.update(extra)
    return args


class ModuleRun:
    """Runs model_engine.main() in-process and returns its JSON result (with ``rc``)."""

    def __call__(self, args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
        full = dict(args, _ansible_check_mode=check)
        out = io.StringIO()
        with patch_module_args(full), redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            model_engine.main()
        result: dict[str, Any] = json.loads(out.getvalue())
        result["rc"] = exit_info.value.code
        return result


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (build.log excluded: it is a log, not state)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "build.log"
    }
