"""The committed lab detector: the files match their manifest and they really detect bottles and cans.

Runs the committed ONNX files with onnxruntime on frames rendered again from the recorded seed (the
generator is deterministic), so a model that was swapped, broken by quantisation or trained on
something else fails here, while no training happens in CI. The accuracy figure is measured here,
not read from the manifest: mAP50 with the toolchain's evaluator on the generator's "test" split,
which neither training nor the choice of checkpoint ever saw (the manifest's ``map50_val`` is on the
"val" split, the one ultralytics picked best.pt with, so it is optimistic).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rvm_edge.manifest import load_manifest, verify
from rvm_edge.preprocess import Preprocessor
from rvm_toolchain import synth

ort = pytest.importorskip("onnxruntime")

LAB = Path(__file__).resolve().parents[2] / "app" / "models" / "lab"
FRAMES = 24
TEST_FRAMES = 200  # about 10 s per model with onnxruntime on 2 cores
# Measured on the 200 test frames (seed 0, split "test"): FP32 0.916, INT8 0.904 (lab-2); the
# guard sits a little below the lower of the two.
MIN_MAP50_TEST = 0.89
RECALL = 0.75  # right class at IoU >= 0.5, conf >= 0.25: measured 0.82 (FP32), 0.79 (INT8) here


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(LAB / "manifest.json")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _detect(
    sess, pre: Preprocessor, image: np.ndarray, conf: float = 0.25
) -> list[tuple[int, float, np.ndarray]]:
    """Plain decode of output0 [1, 4+nc, N]: centre boxes in letterbox pixels -> original xyxy, NMS."""
    tensor, (g,) = pre([image])
    out = sess.run(None, {"images": tensor})[0][0].T
    scores = out[:, 4:].max(1)
    keep = scores >= conf
    boxes, cls, scores = out[keep, :4], out[keep, 4:].argmax(1), scores[keep]
    xyxy = np.stack(
        [
            boxes[:, 0] - boxes[:, 2] / 2,
            boxes[:, 1] - boxes[:, 3] / 2,
            boxes[:, 0] + boxes[:, 2] / 2,
            boxes[:, 1] + boxes[:, 3] / 2,
        ],
        1,
    )
    xyxy = (xyxy - [g.pad_x, g.pad_y, g.pad_x, g.pad_y]) / g.gain
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), conf, 0.5)
    return [(int(cls[i]), float(scores[i]), xyxy[i]) for i in np.array(idx).reshape(-1)]


def _recall(detections: list[list[tuple[int, float, np.ndarray]]], samples: list[synth.Sample]) -> float:
    found = total = 0
    for dets, sample in zip(detections, samples, strict=True):
        for box in sample.boxes:
            gt = np.array([box.x1, box.y1, box.x2, box.y2])
            total += 1
            found += any(c == box.cls and _iou(d, gt) >= 0.5 for c, _, d in dets)
    return found / total


@pytest.fixture(scope="module")
def unseen(manifest) -> list[synth.Sample]:
    """Frames of the "test" split: neither training nor the checkpoint choice saw them."""
    seed = manifest.models[0].source["seed"]
    return [s for _, s in synth.samples(seed, "test", FRAMES)]


def test_lab_files_match_their_manifest(manifest) -> None:
    assert verify(LAB / "manifest.json") == []
    assert {m.precision for m in manifest.models} == {"fp32", "int8"}
    for m in manifest.models:
        assert m.classes == ("bottle", "can", "other") and m.input_shape == (1, 3, 320, 320)


def test_manifest_records_how_to_reproduce(manifest) -> None:
    for m in manifest.models:
        assert m.source["reproduce"].startswith("make -C toolchain lab-models LAB_SEED=")
        assert m.source["data"]["seed"] == m.source["seed"]


def test_map50_on_the_unseen_test_split(manifest, tmp_path: Path) -> None:
    """mAP50 of both committed files on frames no training step or checkpoint choice saw."""
    pytest.importorskip("ultralytics")
    from rvm_toolchain.evaluate import evaluate_manifest

    seed = manifest.models[0].source["seed"]
    report = evaluate_manifest(LAB / "manifest.json", seed, "test", TEST_FRAMES, tmp_path)
    figures = {report[m.name]["precision"]: report[m.name]["map50"] for m in manifest.models}
    print(f"\nlab detector mAP50 on {TEST_FRAMES} unseen test frames (seed {seed}): {figures}")
    assert set(figures) == {"fp32", "int8"}
    for precision, value in figures.items():
        assert value >= MIN_MAP50_TEST, f"{precision}: mAP50 {value} on the test split"


def test_openvino_scores_like_onnx_runtime_and_bf16_keeps_the_accuracy(manifest, tmp_path: Path) -> None:
    """``eval --backend openvino``: at f32 the device's OpenVINO compile scores the FP32 file as ONNX
    Runtime does (so only the precision differs), and the device's default (auto: bf16 on a CPU
    with bf16 instructions, issue 17) stays within 0.005 mAP50 of it."""
    pytest.importorskip("ultralytics")
    pytest.importorskip("openvino", reason="openvino is not in this venv (pip install openvino)")
    from rvm_edge.backends.openvino import native_bf16
    from rvm_toolchain.evaluate import evaluate_manifest

    seed, name, frames = manifest.models[0].source["seed"], manifest.by_role("detector").name, 60
    runs = {
        (backend, precision): evaluate_manifest(
            LAB / "manifest.json",
            seed,
            "test",
            frames,
            tmp_path / f"{backend}-{precision}",
            backend,
            precision,
        )[name]
        for backend, precision in (("onnxruntime", "f32"), ("openvino", "f32"), ("openvino", "auto"))
    }
    ort, f32, auto = runs.values()
    assert f32["inference"] == "openvino f32"
    assert f32["map50"] == pytest.approx(ort["map50"], abs=0.002)
    assert auto["inference"] == ("openvino bf16" if native_bf16() else "openvino f32")
    assert auto["map50"] == pytest.approx(f32["map50"], abs=0.005)


def test_test_split_shares_no_frame_with_training_or_selection(manifest) -> None:
    """The frame indices scored above lie outside every range the recipe trained, picked or calibrated on."""
    data = manifest.models[0].source["data"]
    first = synth.SPLIT_OFFSETS["test"]
    for split in ("train", "val", "calib"):
        start, count = synth.SPLIT_OFFSETS[split], data[split]
        assert first + TEST_FRAMES <= start or start + count <= first, split


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_lab_model_finds_the_objects_in_unseen_frames(manifest, unseen, precision: str) -> None:
    entry = next(m for m in manifest.models if m.precision == precision)
    sess = ort.InferenceSession(str(LAB / entry.file), providers=["CPUExecutionProvider"])
    pre = Preprocessor(320, 320)
    detections = [_detect(sess, pre, s.image) for s in unseen]
    assert _recall(detections, unseen) >= RECALL
    seed = manifest.models[0].source["seed"]
    empty = [synth.render(seed, synth.SPLIT_OFFSETS["test"] + i, objects=0).image for i in range(6)]
    assert [_detect(sess, pre, image) for image in empty] == [[]] * 6  # nothing invented on an empty tray
