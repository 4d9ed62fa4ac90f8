"""Shared fixtures: small real models, manifests and frames made on the spot (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_models import fixed_detector, yolo_output
from rvm_edge.manifest import Manifest, ModelEntry, sha256_file, write_manifest

LAB_CLASSES = ["bottle", "can", "other"]
APP_DIR = Path(__file__).resolve().parents[1]
# the committed lab detector; RVM_EDGE_LAB_MANIFEST points the lab-model tests at another export
LAB_MANIFEST = Path(os.environ.get("RVM_EDGE_LAB_MANIFEST", APP_DIR / "models" / "lab" / "manifest.json"))
SIZE = 64


def write_detector_manifest(folder: Path, model: Path, classes: list[str], size: int) -> Path:
    entry = ModelEntry(
        name="fixed",
        role="detector",
        version="1",
        file=model.name,
        sha256=sha256_file(model),
        format="onnx",
        precision="fp32",
        input_shape=(1, 3, size, size),
        classes=tuple(classes),
        source={"made_by": "tests/onnx_models.py"},
    )
    path = folder / "manifest.json"
    write_manifest(path, Manifest((entry,)))
    return path


@pytest.fixture
def one_bottle_model(tmp_path: Path) -> Path:
    """Manifest of a detector that always sees one bottle (0.9), centred, 20x30 px of its 64 px input."""
    out = yolo_output(SIZE, 3, 16, [(0, 0.9, (32.0, 32.0, 20.0, 30.0))])
    model = fixed_detector(tmp_path / "models" / "fixed.onnx", out, SIZE, LAB_CLASSES, dynamic_batch=True)
    return write_detector_manifest(model.parent, model, LAB_CLASSES, SIZE)


def draw_frame(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """An intake-like frame: grey background, a bright bottle-ish rounded rectangle."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(img, (w // 2 - 15, h // 2 - 30), (w // 2 + 15, h // 2 + 30), (40, 160, 60), -1)
    cv2.circle(img, (w // 2, h // 2 - 30), 12, (40, 160, 60), -1)
    noise = rng.integers(0, 8, img.shape, dtype=np.uint8)
    return cv2.add(img, noise)


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"frame_{i:03d}.png"), draw_frame(seed=i))
    return d
