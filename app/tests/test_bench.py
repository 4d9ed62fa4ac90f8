"""The benchmark's own judgements: when two pipelines count as giving the same detections."""

from __future__ import annotations

from rvm_edge.bench import Samples, box_iou, detections_agree, format_table, summarize
from rvm_edge.messages import Detection, Detections


def _dets(*items: tuple[int, float, tuple[float, float, float, float]]) -> Detections:
    return Detections(0, (100, 100), tuple(Detection(c, str(c), p, b) for c, p, b in items))


def test_equal_detections_tolerate_float_noise_in_any_order() -> None:
    ours = _dets((0, 0.90, (10, 10, 50, 50)), (1, 0.70, (60, 60, 90, 90)))
    ref = _dets((1, 0.705, (60, 60, 90, 90.1)), (0, 0.899, (10, 10, 50, 50)))
    assert detections_agree(ours, ref)


def test_a_shifted_box_a_class_swap_or_a_missing_item_is_not_equal() -> None:
    ours = _dets((0, 0.9, (10, 10, 50, 50)))
    assert not detections_agree(ours, _dets((0, 0.9, (12, 10, 52, 50))))  # IoU 0.90
    assert not detections_agree(ours, _dets((1, 0.9, (10, 10, 50, 50))))
    assert not detections_agree(ours, _dets((0, 0.92, (10, 10, 50, 50))))
    assert not detections_agree(ours, _dets())
    assert box_iou((10, 10, 50, 50), (12, 10, 52, 50)) == (38 * 40) / (2 * 1600 - 38 * 40)


def test_table_shows_missing_figures_as_a_dash() -> None:
    table = format_table({"backend": "onnxruntime", "e2e_ms_p50": 12.0, "e2e_ms_p95": None})
    assert "12.0 / -" in table and "onnxruntime" in table


def test_the_worst_sam2_item_is_reported_beside_the_median() -> None:
    samples = Samples(model=[10.0, 10.0], e2e=[12.0, 12.0], segment=[1000.0, 1100.0, 1400.0], detections=[])
    report = summarize({"backend": "openvino"}, samples, 2)
    assert report["segment_ms_p50"] == 1100.0 and report["segment_ms_max"] == 1400.0
    assert report["segments"] == 3 and report["full_item_ms_p50"] == 1112.0
    assert "1400.0 / 3" in format_table(report)
