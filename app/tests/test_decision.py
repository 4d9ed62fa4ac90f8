"""Accept/reject rules, each with the reason a technician at the machine would read."""

from __future__ import annotations

import pytest

from rvm_edge.decision import DecisionConfig, ReasonCode, decide
from rvm_edge.messages import Detection, Detections, Verdict

CFG = DecisionConfig(class_min_confidence={"can": 0.7})
H, W = 480, 640


def dets(*items: tuple[str, float, tuple[float, float, float, float]]) -> Detections:
    ids = {"bottle": 0, "can": 1, "other": 2}
    return Detections(0, (H, W), tuple(Detection(ids[c], c, p, b) for c, p, b in items))


def test_one_confident_bottle_in_the_middle_is_accepted_as_plastic() -> None:
    d = decide(dets(("bottle", 0.91, (200, 100, 300, 400))), CFG)
    assert d.verdict is Verdict.ACCEPTED and d.material == "plastic"
    assert d.reason == "plastic bottle, 91% confidence" and d.code is ReasonCode.ACCEPTED


def test_empty_view() -> None:
    d = decide(dets(("bottle", 0.1, (200, 100, 300, 400))), CFG)  # below presence: noise
    assert d.verdict is Verdict.REJECTED and d.reason == "no item recognised in view"
    assert d.code is ReasonCode.EMPTY  # what the recorder matches on, not the text


def test_two_items_in_view() -> None:
    d = decide(dets(("bottle", 0.9, (10, 10, 100, 100)), ("can", 0.8, (300, 100, 400, 300))), CFG)
    assert d.verdict is Verdict.REJECTED
    assert d.reason == "2 items in view (bottle, can): insert one item at a time"
    assert d.code is ReasonCode.SEVERAL_ITEMS


def test_one_object_seen_as_two_classes_is_one_item() -> None:
    # per-class NMS keeps both labels for the same can; the technician sees one item, not two
    d = decide(dets(("can", 0.82, (200, 100, 300, 400)), ("bottle", 0.31, (202, 101, 301, 398))), CFG)
    assert d.verdict is Verdict.ACCEPTED and d.material == "metal"
    assert d.reason == "metal can, 82% confidence"


def test_class_mapped_to_reject() -> None:
    d = decide(dets(("other", 0.95, (200, 100, 300, 400))), CFG)
    assert d.verdict is Verdict.REJECTED and "'other' is not an accepted container" in d.reason
    assert d.code is ReasonCode.NOT_ACCEPTED


def test_per_class_confidence_threshold() -> None:
    d = decide(dets(("can", 0.65, (200, 100, 300, 400))), CFG)
    assert d.verdict is Verdict.REJECTED and "only 65% confidence (needs 70%)" in d.reason
    assert d.code is ReasonCode.LOW_CONFIDENCE
    assert decide(dets(("bottle", 0.65, (200, 100, 300, 400))), CFG).accepted  # bottle needs 50%


@pytest.mark.parametrize(
    ("box", "side"),
    [((0, 100, 100, 300), "left"), ((200, 100, 300, 480), "bottom"), ((540, 0, 640, 100), "top and right")],
)
def test_item_cut_by_the_frame_edge(box: tuple[float, float, float, float], side: str) -> None:
    d = decide(dets(("bottle", 0.9, box)), CFG)
    assert d.verdict is Verdict.REJECTED and f"cut by the {side} edge" in d.reason
    assert d.code is ReasonCode.CUT_BY_EDGE


def test_size_bounds() -> None:
    small = decide(dets(("bottle", 0.9, (300, 200, 310, 210))), CFG)
    assert small.verdict is Verdict.REJECTED and "too small: covers 0.0% of the image" in small.reason
    assert small.code is ReasonCode.TOO_SMALL
    big = decide(dets(("bottle", 0.9, (5, 5, 635, 475))), DecisionConfig(max_area_fraction=0.5))
    assert big.verdict is Verdict.REJECTED and "too large" in big.reason and "50%" in big.reason
    assert big.code is ReasonCode.TOO_LARGE


def test_bad_config_is_refused_with_the_key() -> None:
    with pytest.raises(ValueError, match=r"decision.materials: \{'bottle': 'paper'\}"):
        DecisionConfig(materials={"bottle": "paper"})
    with pytest.raises(ValueError, match=r"decision\.min_area_fraction must be below"):
        DecisionConfig(min_area_fraction=0.5, max_area_fraction=0.1)
    with pytest.raises(ValueError, match=r"missing \['glass_jar'\]"):
        CFG.check_classes(["bottle", "can", "other", "glass_jar"])
