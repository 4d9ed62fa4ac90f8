"""``rvm-toolchain export`` on a tiny real YOLO11n: layout, manifest, and an INT8 head kept in float."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rvm_edge.manifest import load_manifest, verify  # noqa: E402
from rvm_toolchain import cli, quantize, synth, yolo_export  # noqa: E402

TINY = 64  # the real YOLO11n graph at a fraction of the compute


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, calib_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export through the user's command line, exactly as an operator would."""
    out = tmp_path_factory.mktemp("export")
    argv = ["export", "--yolo", str(tiny_checkpoint), "--out", str(out), "--imgsz", str(TINY)]
    assert cli.main([*argv, "--int8", "--calib", str(calib_dir)]) == 0
    return out


def _outputs(model_path: Path, frames: list[np.ndarray]) -> np.ndarray:
    from rvm_edge.preprocess import Preprocessor

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    pre = Preprocessor(TINY, TINY)
    return np.concatenate([sess.run(None, {"images": pre([f])[0]})[0] for f in frames])


def test_export_has_the_standard_ultralytics_layout(exported: Path) -> None:
    info = yolo_export.describe(exported / "tiny-64.onnx")
    assert info.input_name == "images" and info.input_shape == (1, 3, TINY, TINY)
    anchors = sum((TINY // s) ** 2 for s in (8, 16, 32))
    assert info.output_shape == (1, 4 + len(synth.CLASSES), anchors)  # no NMS inside
    assert info.classes == synth.CLASSES and info.opset == 17
    meta = {p.key: p.value for p in onnx.load(str(exported / "tiny-64.onnx")).metadata_props}
    assert meta["names"] == "{0: 'bottle', 1: 'can', 2: 'other'}"  # as ultralytics writes it


def test_manifest_describes_both_files_and_verifies(exported: Path, tiny_checkpoint: Path) -> None:
    manifest = load_manifest(exported / "manifest.json")
    by_precision = {m.precision: m for m in manifest.models}
    assert set(by_precision) == {"fp32", "int8"}
    for entry in manifest.models:
        assert entry.role == "detector" and entry.classes == synth.CLASSES
        assert entry.input_shape == (1, 3, TINY, TINY)
        assert entry.version.startswith("sha-") and entry.source["checkpoint"] == tiny_checkpoint.name
    assert by_precision["int8"].source["quantization"]["calibration_images"] == 8
    assert verify(exported / "manifest.json") == []


def test_int8_is_quantised_but_the_head_decoding_stays_float(exported: Path) -> None:
    model = onnx.load(str(exported / "tiny-64-int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50  # the backbone and head convolutions are INT8
    assert quantize.quantized_decode_tensors(model) == []
    producer = next(n for n in model.graph.node if "output0" in n.output)
    assert producer.op_type == "Concat"  # boxes and scores joined in float, not dequantised from one grid
    size_ratio = (exported / "tiny-64-int8.onnx").stat().st_size / (exported / "tiny-64.onnx").stat().st_size
    assert size_ratio < 0.45


def test_int8_scores_track_fp32_while_a_naive_int8_collapses(
    exported: Path, calib_dir: Path, tmp_path: Path
) -> None:
    """The reason for the float head, measured: class scores of the naive model lose their resolution."""
    frames = [s.image for _, s in synth.samples(0, "val", 4, size=(160, 120))]
    fp32 = _outputs(exported / "tiny-64.onnx", frames)
    good = _outputs(exported / "tiny-64-int8.onnx", frames)
    naive_path = tmp_path / "naive.onnx"
    quantize.quantize_detector(exported / "tiny-64.onnx", naive_path, calib_dir, float_head=False)
    assert quantize.quantized_decode_tensors(onnx.load(str(naive_path)))  # the check sees the problem
    naive = _outputs(naive_path, frames)
    scores = slice(4, None)
    good_err = np.abs(good[:, scores] - fp32[:, scores]).mean()
    naive_err = np.abs(naive[:, scores] - fp32[:, scores]).mean()
    assert good_err < 0.5 * naive_err
    # box coordinates span 0..64 px: on their shared 8-bit grid every score (< 0.1 here) rounds to 0
    assert np.abs(naive[:, scores]).max() == 0 < fp32[:, scores].max()


def test_export_refuses_a_missing_checkpoint_with_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = cli.main(["export", "--yolo", str(tmp_path / "nope.pt"), "--out", str(tmp_path)])
    assert code == 2
    assert f"{tmp_path / 'nope.pt'}: checkpoint not found" in capsys.readouterr().err


def test_int8_without_calibration_frames_is_refused(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    code = cli.main(["export", "--yolo", str(tiny_checkpoint), "--out", str(tmp_path), "--int8"])
    assert code == 2 and "--int8 needs --calib DIR" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_too_few_calibration_frames_are_refused(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(quantize.QuantizeError, match=r"1 image\(s\) for calibration, need at least 8"):
        quantize.quantize_detector(exported / "tiny-64.onnx", tmp_path / "q.onnx", tmp_path)
    with pytest.raises(quantize.QuantizeError, match="calibration folder not found"):
        quantize.quantize_detector(exported / "tiny-64.onnx", tmp_path / "q.onnx", tmp_path / "missing")


def test_a_corrupt_onnx_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(yolo_export.ExportError, match=r"bad\.onnx: not a readable ONNX file"):
        yolo_export.describe(bad)


def test_second_export_replaces_its_entries_and_keeps_others(exported: Path, tmp_path: Path) -> None:
    """Exports into one folder accumulate; re-exporting a name replaces it instead of duplicating it."""
    from rvm_toolchain.manifests import merge_into

    manifest = load_manifest(exported / "manifest.json")
    folder = tmp_path / "m"
    folder.mkdir()
    for entry in manifest.models:
        (folder / entry.file).write_bytes((exported / entry.file).read_bytes())
    merge_into(folder / "manifest.json", manifest.models)
    merge_into(folder / "manifest.json", manifest.models[:1])
    names = [m["name"] for m in json.loads((folder / "manifest.json").read_text())["models"]]
    assert sorted(names) == sorted(m.name for m in manifest.models)
