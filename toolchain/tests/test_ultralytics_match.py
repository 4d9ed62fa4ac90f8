"""The project's own letterbox/decode/NMS give ultralytics' predictions on the lab model.

Same model file, same frames: ultralytics' predict pipeline against ``rvm_edge.detector``. Every
detection must match one of the same class with box IoU >= 0.99 and confidence within 0.01.
Needs ultralytics (the toolchain venv) and the committed lab model: ``make -C toolchain test``
runs it there and sets RVM_REQUIRE_REFERENCE=1 so a missing prerequisite fails instead of skipping.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import LAB_MANIFEST, require
from rvm_edge.bench import box_iou
from rvm_edge.detector import DetectorConfig, load_detector
from rvm_edge.manifest import load_manifest
from rvm_edge.messages import Detection
from rvm_toolchain import synth

pytestmark = pytest.mark.ultralytics
FRAMES = 24


def _frames() -> list[np.ndarray]:
    return [s.image for _, s in synth.samples(7, "frames", FRAMES)]


def _detectors() -> list[str]:
    if not LAB_MANIFEST.is_file():
        return []
    return [m.name for m in load_manifest(LAB_MANIFEST).models if m.role == "detector"]


@pytest.mark.parametrize("model_name", _detectors() or ["(no lab model)"])
def test_same_detections_as_ultralytics(model_name: str) -> None:
    require(LAB_MANIFEST.is_file(), f"no lab model at {LAB_MANIFEST}: run `make -C toolchain lab-models`")
    try:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO
    except ImportError:
        require(False, "ultralytics is not installed here: run `make -C toolchain test`")
    manifest = load_manifest(LAB_MANIFEST)
    entry = manifest.by_name(model_name)
    ours = load_detector(LAB_MANIFEST, "onnxruntime", model_name, DetectorConfig(0.25, 0.7))
    ref = YOLO(str(manifest.file_path(entry)), task="detect")
    size = entry.input_shape[-1]
    compared = 0
    for i, frame in enumerate(_frames()):
        mine = ours.detect(frame).items
        r = ref.predict(frame, imgsz=size, conf=0.25, iou=0.7, verbose=False)[0]
        theirs = [
            Detection(int(c), entry.classes[int(c)], float(p), tuple(b))
            for c, p, b in zip(
                r.boxes.cls.tolist(), r.boxes.conf.tolist(), r.boxes.xyxy.tolist(), strict=True
            )
        ]
        assert len(mine) == len(theirs), f"frame {i}: {len(mine)} detections, ultralytics {len(theirs)}"
        unmatched = list(theirs)
        for d in mine:
            best = max(
                (t for t in unmatched if t.class_id == d.class_id),
                key=lambda t: box_iou(t.box, d.box),
                default=None,
            )
            assert best is not None, f"frame {i}: {d.class_name} has no ultralytics detection of that class"
            assert box_iou(best.box, d.box) >= 0.99, f"frame {i}: {d.box} vs {best.box}"
            gap = abs(best.confidence - d.confidence)
            assert gap <= 0.01, f"frame {i}: confidence {d.confidence} vs {best.confidence}"
            unmatched.remove(best)
            compared += 1
    assert compared >= FRAMES // 2, f"only {compared} detections in {FRAMES} frames: not the trained model?"


def test_ultralytics_backend_gives_the_raw_output_of_onnxruntime(one_bottle_model) -> None:
    """The reference backend (ultralytics' AutoBackend) runs the same file to the same numbers."""
    from rvm_edge.backends import BackendError, create_backend

    try:
        reference = create_backend("ultralytics", one_bottle_model)
    except BackendError as exc:  # no torch/ultralytics in this venv
        require(False, f"ultralytics backend unavailable here: {exc}")
    ours = create_backend("onnxruntime", one_bottle_model)
    x = np.random.default_rng(1).random(ours.input_shape, dtype=np.float32)
    np.testing.assert_allclose(reference.infer(x), ours.infer(x), atol=1e-6)
