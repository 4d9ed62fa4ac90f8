"""Fixtures for the model toolchain: a tiny real YOLO11n checkpoint and frames from the generator.

Tests that need torch/ultralytics skip themselves (``pytest.importorskip``) in the device venv;
``make -C app test-toolchain`` runs them all in the export venv.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from rvm_edge.toolchain import synth


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO11n detect checkpoint (bottle/can/other, seeded random weights) saved as ultralytics does."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    from rvm_edge.toolchain import offline

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
