"""The rvm-edge command line, as an operator or Ansible calls it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from import_probe import modules_loaded_by_the_cli
from rvm_edge.cli import main


def test_detect_prints_one_json_line_per_image(
    one_bottle_model: Path, frames_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = sorted(str(p) for p in frames_dir.iterdir())[:2]
    assert main(["detect", *images, "--json", "--manifest", str(one_bottle_model)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == images
    first = lines[0]
    assert set(first) == {"image", "detections", "decision", "reason"}
    assert first["decision"] == "ACCEPTED" and first["reason"] == "plastic bottle, 90% confidence"
    (d,) = first["detections"]
    assert d["class"] == "bottle" and d["confidence"] == pytest.approx(0.9) and len(d["box"]) == 4


def test_detect_skips_an_unreadable_image_and_says_so(
    one_bottle_model: Path, tmp_path: Path, frames_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    good = str(next(frames_dir.iterdir()))
    assert main(["detect", str(bad), good, "--json", "--manifest", str(one_bottle_model)]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1 and f"skipping {bad}: not a readable image" in out.err


def test_unknown_backend_is_a_clear_error(one_bottle_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "x.jpg", "--backend", "tflite", "--manifest", str(one_bottle_model)]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'tflite'; available backends: onnxruntime" in err and "Traceback" not in err


def test_models_verify_passes_then_names_the_broken_file(
    one_bottle_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "verify", str(one_bottle_model)]) == 0
    assert capsys.readouterr().out.startswith("ok ")
    (one_bottle_model.parent / "fixed.onnx").write_bytes(b"swapped")
    assert main(["models", "verify", str(one_bottle_model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAIL ") and "fixed.onnx: sha256 is" in err and "rvm-edge models verify" in err


def test_missing_manifest_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "x.jpg", "--manifest", str(tmp_path / "none.json")]) == 2
    assert "make -C toolchain lab-models" in capsys.readouterr().err


def test_bench_writes_table_json_and_plot(
    one_bottle_model: Path, frames_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    args = ["bench", str(frames_dir), "--manifest", str(one_bottle_model), "--iterations", "10"]
    args += ["--json", str(out_json), "--plot", str(out_png), "--soak", "30", "--no-segment"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "e2e ms p50 / p95" in table and "RSS slope" in table
    report = json.loads(out_json.read_text())
    keys = ("backend", "model_ms_p50", "model_ms_p95", "e2e_ms_p50", "e2e_ms_p95", "segment_ms_p50", "fps")
    assert all(key in report for key in keys)
    assert report["backend"] == "onnxruntime" and report["frames"] == 10
    assert report["e2e_ms_p50"] >= report["model_ms_p50"] > 0 and report["peak_rss_mb"] > 0
    assert report["soak_frames"] == 30 and "rss_slope_mb_per_1k_frames" in report
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stream_runs_the_pipeline_on_a_folder(
    one_bottle_model: Path, frames_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stream", str(frames_dir), "--manifest", str(one_bottle_model), "--no-segment"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2, 3, 4]
    assert "5 frames processed, 0 dropped" in out.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from rvm_edge import __version__

    assert main(["version"]) == 0 and capsys.readouterr().out.strip() == __version__


def test_models_export_points_to_the_toolchain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "export", "--yolo", "best.pt", "--out", "x"]) == 2
    assert "rvm-toolchain export" in capsys.readouterr().err


def test_help_and_run_import_no_toolchain_torch_or_simulator() -> None:
    """`rvm-edge --help` and the `run` command's modules load nothing from the control node or the lab.

    The toolchain's source is put on the path (and the simulator is installed in this venv), so an
    import of either would succeed here and show up in sys.modules.
    """
    toolchain_src = Path(__file__).resolve().parents[2] / "toolchain" / "src"
    assert modules_loaded_by_the_cli(sys.executable, extra_path=toolchain_src) == []
