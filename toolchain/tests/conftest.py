"""Fixtures for the model toolchain: a tiny real YOLO11n checkpoint, frames from the generator, the
committed lab model, and the app's small hand-built ONNX detectors (app/tests/onnx_models.py).

``make -C toolchain test`` runs them in the toolchain venv with RVM_REQUIRE_REFERENCE=1, so a
missing prerequisite (ultralytics, the lab model, the SAM2 lab export) fails instead of skipping.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import pytest

from rvm_toolchain import synth

ROOT = Path(__file__).resolve().parents[2]
APP_TESTS = ROOT / "app" / "tests"
# the committed lab detector; RVM_EDGE_LAB_MANIFEST points the lab-model tests at another export
LAB_MANIFEST = Path(
    os.environ.get("RVM_EDGE_LAB_MANIFEST", ROOT / "app" / "models" / "lab" / "manifest.json")
)
LAB_CLASSES = ["bottle", "can", "other"]


def require(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing; fail instead under ``make -C toolchain test``."""
    if not condition:
        if os.environ.get("RVM_REQUIRE_REFERENCE") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def one_bottle_model(tmp_path: Path) -> Path:
    """The ONNX file of a detector that always sees one bottle (the app tests' fixed detector)."""
    sys.path.insert(0, str(APP_TESTS))
    try:
        from onnx_models import fixed_detector, yolo_output
    finally:
        sys.path.remove(str(APP_TESTS))
    out = yolo_output(64, 3, 16, [(0, 0.9, (32.0, 32.0, 20.0, 30.0))])
    return fixed_detector(tmp_path / "fixed.onnx", out, 64, LAB_CLASSES, dynamic_batch=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO11n detect checkpoint (bottle/can/other, seeded random weights) saved as ultralytics does."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    from rvm_toolchain import offline

    offline.prepare()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=len(synth.CLASSES), verbose=False)
    model.names = dict(enumerate(synth.CLASSES))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": model, "train_args": {"imgsz": 64, "task": "detect"}}, path)
    return path


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight calibration frames from the generator's calibration split."""
    folder = tmp_path_factory.mktemp("calib")
    for index, sample in synth.samples(0, "calib", 8, size=(160, 120)):
        cv2.imwrite(str(folder / f"calib_{index}.png"), sample.image)
    return folder
