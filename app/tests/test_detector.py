"""Detector over real backends: boxes land where the model put them, on any image size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import LAB_CLASSES, SIZE, write_detector_manifest
from onnx_models import fixed_detector, yolo_output
from rvm_edge.backends import BackendError, available_backends, create_backend
from rvm_edge.backends.tensorrt import TensorRTBackend
from rvm_edge.detector import load_detector
from rvm_edge.manifest import ManifestError

BACKENDS = [b for b in ("onnxruntime", "openvino") if available_backends()[b]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_box_maps_back_to_a_wide_frame(one_bottle_model: Path, backend: str) -> None:
    det = load_detector(one_bottle_model, backend)
    # 64 px input, 128x256 frame: gain 0.25, pad_y 16. Model box (22,17)-(42,47) -> x 88..168, y 4..124
    result = det.detect(np.zeros((128, 256, 3), np.uint8))
    (item,) = result.items
    assert item.class_name == "bottle" and item.confidence == pytest.approx(0.9)
    np.testing.assert_allclose(item.box, (88, 4, 168, 124), atol=1e-3)
    assert set(result.timings_ms) == {"preprocess_ms", "model_ms", "postprocess_ms"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_gives_the_same_answer_as_single_frames(one_bottle_model: Path, backend: str) -> None:
    det = load_detector(one_bottle_model, backend, batch=4)
    assert det.max_batch == 4
    frames = [
        np.zeros((128, 256, 3), np.uint8),
        np.zeros((64, 64, 3), np.uint8),
        np.zeros((300, 100, 3), np.uint8),
    ]
    batched = det.detect_batch(frames, [7, 8, 9])
    single = [det.detect(f) for f in frames]
    assert [b.frame_index for b in batched] == [7, 8, 9]
    for b, s in zip(batched, single, strict=True):
        assert [i.box for i in b.items] == [i.box for i in s.items]


def test_unknown_backend_lists_the_available_ones(one_bottle_model: Path) -> None:
    with pytest.raises(
        BackendError, match=r"unknown backend 'cuda'; available backends: onnxruntime, openvino"
    ):
        load_detector(one_bottle_model, "cuda")


def test_corrupt_model_refused_before_loading(one_bottle_model: Path) -> None:
    (one_bottle_model.parent / "fixed.onnx").write_bytes(b"not a model")
    with pytest.raises(ManifestError, match=r"sha256 is .* the manifest expects"):
        load_detector(one_bottle_model)


def test_model_with_other_classes_than_manifest_refused_at_start(tmp_path: Path) -> None:
    model = fixed_detector(tmp_path / "m.onnx", yolo_output(SIZE, 3, 8, []), SIZE, ["bottle", "can", "jar"])
    manifest = write_detector_manifest(tmp_path, model, LAB_CLASSES, SIZE)
    with pytest.raises(ManifestError, match=r"class names in the model \['bottle', 'can', 'jar'\] disagree"):
        load_detector(manifest)


def test_model_with_other_input_size_than_manifest_refused_at_start(tmp_path: Path) -> None:
    model = fixed_detector(tmp_path / "m.onnx", yolo_output(32, 3, 8, []), 32, LAB_CLASSES)
    manifest = write_detector_manifest(tmp_path, model, LAB_CLASSES, SIZE)
    with pytest.raises(ManifestError, match=r"model input \[1, 3, 32, 32\] disagrees .* \[1, 3, 64, 64\]"):
        load_detector(manifest)


def test_garbage_onnx_gives_a_backend_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(BackendError, match=str(bad)):
        create_backend("onnxruntime", bad)


class EngineDouble:
    """Stands in for TensorRT's engine on hardware we lack: FP16 input, float output, fixed shapes."""

    input_name, output_name = "images", "output0"
    input_shape = (1, 3, SIZE, SIZE)
    output_shape = (1, 7, 16)
    input_dtype = np.dtype(np.float16)
    output_dtype = np.dtype(np.float16)

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []
        self.closed = False

    def run(self, host_input: np.ndarray, host_output: np.ndarray) -> None:
        self.seen.append(host_input.copy())
        host_output[...] = yolo_output(SIZE, 3, 16, [(1, 0.75, (32.0, 32.0, 20.0, 30.0))])

    def close(self) -> None:
        self.closed = True


def test_tensorrt_backend_around_the_engine(tmp_path: Path) -> None:
    from rvm_edge.detector import Detector

    runner = EngineDouble()
    backend = TensorRTBackend(tmp_path / "yolo.engine", runner=runner)
    det = Detector(backend, LAB_CLASSES)
    (item,) = det.detect(np.zeros((64, 64, 3), np.uint8)).items
    assert item.class_name == "can" and item.confidence == pytest.approx(0.75, abs=1e-3)
    assert runner.seen[-1].dtype == np.float16  # the FP16 engine got half-precision input
    det.close()
    assert runner.closed
    with pytest.raises(BackendError, match=r"serialized engine \(.engine/.plan\), not .onnx"):
        TensorRTBackend(tmp_path / "yolo.onnx")
    with pytest.raises(BackendError, match="engine missing; build it on the device"):
        TensorRTBackend(tmp_path / "absent.engine")


def test_onnxruntime_and_openvino_agree_on_a_real_yolo11(tmp_path: Path) -> None:
    """If the lab model is there, both CPU backends give the same raw output (within float noise)."""
    from conftest import LAB_MANIFEST

    if not LAB_MANIFEST.is_file() or not available_backends()["openvino"]:
        pytest.skip("needs the committed lab model and openvino")
    models = json.loads(LAB_MANIFEST.read_text())["models"]
    entry = next(m for m in models if m["role"] == "detector" and m["precision"] == "fp32")
    model = LAB_MANIFEST.parent / entry["file"]
    x = np.random.default_rng(0).random((1, 3, *entry["input_shape"][2:]), dtype=np.float32)
    a = create_backend("onnxruntime", model).infer(x).copy()
    b = create_backend("openvino", model, precision="f32").infer(x)
    np.testing.assert_allclose(a, b, atol=1e-2, rtol=1e-3)


def test_onnxruntime_prefers_tensorrt_then_cuda_and_keeps_cpu_as_fallback() -> None:
    from rvm_edge.backends.ort import pick_providers

    jetson = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert pick_providers(list(reversed(jetson))) == jetson
    assert pick_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    chosen = pick_providers(jetson, ["CUDAExecutionProvider"])
    assert chosen == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(BackendError, match=r"providers \['CUDAExecutionProvider'\] are not in this build"):
        pick_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


# /proc/cpuinfo "flags" lines, cut short: AMD Zen 4 (this lab's host), Sapphire Rapids (AMX), Ice
# Lake (AVX-512 but no bf16 arithmetic: OpenVINO left to itself would emulate bf16 there), an ARM CPU
ZEN4 = "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE = "flags\t\t: avx512f amx_bf16 amx_tile\n"
ICELAKE = "flags\t\t: fpu avx2 avx512f avx512_vnni\n"
ARM = "Features\t: fp asimd bf16\n"


@pytest.mark.skipif(not available_backends()["openvino"], reason="needs openvino")
@pytest.mark.parametrize(
    ("cpuinfo", "hint"),
    [(ZEN4, "bf16"), (SAPPHIRE, "bf16"), (ICELAKE, "f32"), (ARM, "f32"), ("", "f32")],
    ids=["zen4", "sapphire-rapids", "icelake", "arm", "unreadable"],
)
def test_auto_asks_openvino_for_bf16_only_where_the_cpu_computes_in_it(cpuinfo: str, hint: str) -> None:
    from rvm_edge.backends.openvino import resolve_precision

    assert resolve_precision("auto", cpuinfo) == hint
    assert (
        resolve_precision("f32", ZEN4) == "f32" and resolve_precision("bf16", ICELAKE) == "bf16"
    )  # as named
