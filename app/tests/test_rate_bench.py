"""``rvm-edge bench --rate``: the service's pipeline at a camera's rate, and the inputs it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnx_models import tiny_sam2
from rvm_edge import rate_bench
from rvm_edge.cli import main
from rvm_edge.decision import DecisionConfig
from rvm_edge.detector import load_detector
from rvm_edge.segment import Sam2Segmenter
from rvm_edge.service.config import ModelsConfig


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate 0: the frame rate must be above 0"),
        (["--rate", "-2"], "--rate -2: the frame rate must be above 0"),
        (["--rate", "2", "--duration", "1"], "--duration 1 at --rate 2: too short to measure"),
        (["--rate", "0.5", "--duration", "10"], "needs at least 5 s and 10 frames (e.g. --duration 20)"),
    ],
)
def test_a_rate_or_duration_that_cannot_be_measured_is_refused(
    frames_dir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", str(frames_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_runs_the_service_pipeline_at_the_asked_rate(one_bottle_model: Path, frames_dir: Path) -> None:
    fps, duration = 4.0, 5.0
    detector = load_detector(one_bottle_model)
    decision = DecisionConfig().covering(detector.classes)
    report, series = rate_bench.run_at_rate(detector, None, frames_dir, decision, fps, duration, idle_s=1.0)
    assert json.loads(json.dumps(report)) == report  # plain JSON
    assert abs(report["frames_processed"] - fps * duration) <= 2
    assert report["deposits_recorded"] == report["frames_processed"]  # the recorder is in the loop
    assert report["slower_than_asked"] is False and report["source_late_frames"] == 0
    cpu = report["cpu_pct_of_one_core"]
    assert (
        cpu["user"] >= 0
        and cpu["system"] >= 0
        and cpu["total"] == pytest.approx(cpu["user"] + cpu["system"], abs=0.02)
    )
    assert {"source", "detect"} <= set(report["cpu_pct_per_stage_thread"])
    assert report["wakeups_per_s"] > 0 and report["rss_mb"] > 0
    assert report["latency_ms"]["e2e"]["p50"] is not None
    assert len(series) >= duration - 1  # one CPU sample a second for the plot


def test_a_source_slower_than_the_rate_is_reported_not_averaged_away(
    one_bottle_model: Path, frames_dir: Path
) -> None:
    """1000 frames a second is more than this detector does: the file source waits for it, its
    frames come late, and the report says so with the rate it really kept."""
    detector = load_detector(one_bottle_model)
    decision = DecisionConfig().covering(detector.classes)
    report, _ = rate_bench.run_at_rate(detector, None, frames_dir, decision, 1000.0, 5.0, idle_s=0.5)
    assert report["slower_than_asked"] is True and report["source_late_frames"] > 0
    assert report["achieved_fps"] < 1000.0


def test_with_sam2_on_the_report_separates_sam2s_own_cpu_from_the_rest(
    one_bottle_model: Path, frames_dir: Path, tmp_path: Path
) -> None:
    """Issue 17's SAM2 budget is "the encoder's own compute plus <= 5 %": the report says what one
    item costs SAM2 alone, and the process's CPU beyond that many items."""
    enc, dec = tiny_sam2(tmp_path)
    detector = load_detector(one_bottle_model)
    segmenter = Sam2Segmenter(enc, dec)
    decision = DecisionConfig().covering(detector.classes)
    report, _ = rate_bench.run_at_rate(detector, segmenter, frames_dir, decision, 2.0, 5.0, idle_s=0.5)
    sam2 = report["sam2_cpu"]
    assert report["sam2"] is True and sam2["items_segmented"] == report["segmented"] > 0
    assert sam2["cpu_s_per_item_alone"] > 0 and sam2["cpu_pct_sam2_own"] > 0
    assert sam2["cpu_pct_beyond_sam2"] == pytest.approx(
        report["cpu_pct_of_one_core"]["total"] - sam2["cpu_pct_sam2_own"], abs=0.02
    )


def test_bench_at_a_rate_runs_the_detector_on_one_thread_as_the_service_does(
    one_bottle_model: Path, frames_dir: Path, tmp_path: Path
) -> None:
    """One inference thread is the service's default (models.threads: 1); bench --rate measures
    that unless told otherwise, and the report says which it ran."""
    out = tmp_path / "rate.json"
    argv = ["bench", str(frames_dir), "--manifest", str(one_bottle_model), "--no-segment"]
    assert main([*argv, "--rate", "2", "--duration", "5", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["backend"]["threads"] == 1 and report["backend"]["allow_spinning"] is False
    assert report["load_avg_1m"] >= 0
    service = ModelsConfig(manifest=one_bottle_model)
    assert (service.threads, service.segmentation.threads) == (1, 0)  # SAM2: one thread per core
