"""rvm-edge names the device exactly as the model_engine module does: the module writes the device into
key.json when it builds, rvm-edge compares it with its own reading at start, so two readings that differ
by a byte would refuse every engine (or, worse, accept one from another board)."""

from __future__ import annotations

import json
import subprocess

import model_engine
import pytest
from model_engine_helpers import APP_PYTHON

ORIN = {
    "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n",
    "/proc/device-tree/model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
    "/proc/cpuinfo": "processor\t: 0\nmodel name\t: ARMv8 Processor rev 1 (v8l)\n",
}
CPU = {"/proc/cpuinfo": "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t: sse\n"}
APP_SIDE = (
    "import json, sys\nimport rvm_edge.engines as e\nfiles = json.loads(sys.argv[1])\n"
    "e._read = files.get\nprint(e.device_identity())"
)


def app_identity(files: dict[str, str]) -> str:
    done = subprocess.run(
        [str(APP_PYTHON), "-c", APP_SIDE, json.dumps(files)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize("files", [ORIN, CPU, {}], ids=["jetson", "cpu", "nothing-readable"])
def test_rvm_edge_and_the_module_name_the_device_alike(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_engine, "_read", files.get)
    assert app_identity(files) == model_engine.detect_device()
    if files is ORIN:
        expected = "jetson:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super:L4T R36.4.3"
        assert model_engine.detect_device() == expected


def test_on_this_machine_too() -> None:
    real = subprocess.run(
        [str(APP_PYTHON), "-c", "from rvm_edge.engines import device_identity; print(device_identity())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert real.stdout.strip() == model_engine.detect_device()
