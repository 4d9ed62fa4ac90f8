"""Accept or reject an item: class -> material mapping, confidence thresholds and intake rules.

Pure functions over :class:`Detections`; the reason strings are written for the technician
standing at the machine ("two items in view"), not for the developer. Programs (which items are
recorded, metrics) match on the :class:`ReasonCode` beside the text, never on the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from rvm_edge.messages import Decision, Detection, Detections, Verdict

MATERIALS = ("plastic", "metal", "glass", "reject")


class ReasonCode(str, Enum):
    """Which rule decided: one code per rule of :func:`decide`, stable across rewordings."""

    ACCEPTED = "accepted"
    EMPTY = "empty"  # nothing in view: the intake is empty
    SEVERAL_ITEMS = "several_items"
    NOT_ACCEPTED = "not_accepted"  # a class mapped to reject
    LOW_CONFIDENCE = "low_confidence"
    CUT_BY_EDGE = "cut_by_edge"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"


@dataclass(frozen=True)
class DecisionConfig:
    """The rules, one place. ``materials`` maps every class name to a material or ``reject``."""

    materials: Mapping[str, str] = field(
        default_factory=lambda: {"bottle": "plastic", "can": "metal", "other": "reject"}
    )
    min_confidence: float = 0.5
    class_min_confidence: Mapping[str, float] = field(default_factory=dict)
    presence_threshold: float = 0.25  # anything above this counts as "something in view"
    # NMS is per class (as in ultralytics), so one object can come back as "bottle" and "can" with the
    # same box: boxes overlapping this much are one item, named by its most confident class
    same_item_iou: float = 0.6
    edge_margin_px: int = 2  # a box this close to the frame edge is cut by it
    min_area_fraction: float = 0.005
    max_area_fraction: float = 0.9

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.materials.items() if v not in MATERIALS}
        if bad:
            raise ValueError(f"decision.materials: {bad} must map to one of {', '.join(MATERIALS)}")
        for name, value in [
            ("min_confidence", self.min_confidence),
            ("presence_threshold", self.presence_threshold),
        ]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"decision.{name} must be within 0..1, got {value}")
        if not 0.0 <= self.min_area_fraction < self.max_area_fraction <= 1.0:
            raise ValueError(
                "decision.min_area_fraction must be below decision.max_area_fraction, both within 0..1, "
                f"got {self.min_area_fraction} and {self.max_area_fraction}"
            )

    def covering(self, classes: tuple[str, ...] | list[str]) -> DecisionConfig:
        """This config with every model class it does not map mapped to ``reject`` (CLI tools, any model)."""
        from dataclasses import replace

        materials = {c: self.materials.get(c, "reject") for c in classes}
        return replace(self, materials=materials)

    def check_classes(self, classes: tuple[str, ...] | list[str]) -> None:
        """Refuse at start a mapping that does not cover the model's classes (or names unknown ones)."""
        missing = [c for c in classes if c not in self.materials]
        unknown = [c for c in self.materials if c not in classes]
        if missing or unknown:
            raise ValueError(
                f"decision.materials must map exactly the model's classes {list(classes)}: "
                f"missing {missing}, not in the model {unknown}"
            )


def _edge_cut(d: Detection, h: int, w: int, margin: int) -> str | None:
    x1, y1, x2, y2 = d.box
    sides = [
        ("left", x1 <= margin),
        ("top", y1 <= margin),
        ("right", x2 >= w - margin),
        ("bottom", y2 >= h - margin),
    ]
    cut = [s for s, hit in sides if hit]
    return " and ".join(cut) if cut else None


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def distinct_items(items: list[Detection], same_item_iou: float) -> list[Detection]:
    """One detection per physical object: the most confident of each group of heavily overlapping boxes."""
    kept: list[Detection] = []
    for d in sorted(items, key=lambda d: -d.confidence):
        if all(_iou(d.box, k.box) < same_item_iou for k in kept):
            kept.append(d)
    return kept


def decide(detections: Detections, config: DecisionConfig) -> Decision:
    """The verdict for one frame; the first rule that fails gives the reason."""
    h, w = detections.image_size
    present = distinct_items(
        [d for d in detections.items if d.confidence >= config.presence_threshold], config.same_item_iou
    )
    if not present:
        return Decision(Verdict.REJECTED, "no item recognised in view", code=ReasonCode.EMPTY)
    if len(present) > 1:
        names = ", ".join(sorted(d.class_name for d in present))
        return Decision(
            Verdict.REJECTED,
            f"{len(present)} items in view ({names}): insert one item at a time",
            code=ReasonCode.SEVERAL_ITEMS,
        )
    item = present[0]
    material = config.materials.get(item.class_name, "reject")
    pct = f"{item.confidence:.0%}"
    if material == "reject":
        return Decision(
            Verdict.REJECTED,
            f"'{item.class_name}' is not an accepted container",
            None,
            item,
            code=ReasonCode.NOT_ACCEPTED,
        )
    needed = config.class_min_confidence.get(item.class_name, config.min_confidence)
    if item.confidence < needed:
        return Decision(
            Verdict.REJECTED,
            f"{item.class_name} recognised with only {pct} confidence (needs {needed:.0%}): "
            "reinsert the item",
            material,
            item,
            code=ReasonCode.LOW_CONFIDENCE,
        )
    side = _edge_cut(item, h, w, config.edge_margin_px)
    if side:
        return Decision(
            Verdict.REJECTED,
            f"{item.class_name} is cut by the {side} edge of the image: not fully in view",
            material,
            item,
            code=ReasonCode.CUT_BY_EDGE,
        )
    x1, y1, x2, y2 = item.box
    fraction = max(0.0, x2 - x1) * max(0.0, y2 - y1) / float(h * w)
    if not config.min_area_fraction <= fraction <= config.max_area_fraction:
        size = "too small" if fraction < config.min_area_fraction else "too large"
        return Decision(
            Verdict.REJECTED,
            f"{item.class_name} is {size}: covers {fraction:.1%} of the image "
            f"(allowed {config.min_area_fraction:.1%} to {config.max_area_fraction:.0%})",
            material,
            item,
            code=ReasonCode.TOO_SMALL if fraction < config.min_area_fraction else ReasonCode.TOO_LARGE,
        )
    return Decision(
        Verdict.ACCEPTED,
        f"{material} {item.class_name}, {pct} confidence",
        material,
        item,
        code=ReasonCode.ACCEPTED,
    )
