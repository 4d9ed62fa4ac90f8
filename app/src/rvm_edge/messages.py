"""The message types that travel between pipeline stages, one per hop.

Frame -> Detections -> Decision -> Segmentation -> Deposit: a reader follows one item from the
camera to the platform by following these types. They are immutable so a stage can hand one to
the next thread without copying and without locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One image from a source. ``image`` is BGR uint8 (OpenCV's order); ``index`` counts from 0."""

    index: int
    image: np.ndarray
    source: str
    timestamp: float  # time.time() when read: wall clock, for records
    t_read: float  # time.perf_counter() when read: for per-stage timings
    pool: Any = field(default=None, compare=False, repr=False)  # BufferPool the image came from

    def release(self) -> None:
        """Hand the image buffer back for reuse; call once, when no stage needs the pixels any more."""
        if self.pool is not None:
            self.pool.release(self.image)


@dataclass(frozen=True)
class Detection:
    """One object: box in original-image pixels (x1, y1, x2, y2)."""

    class_id: int
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, object]:
        return {
            "class": self.class_name,
            "confidence": round(self.confidence, 4),
            "box": [round(v, 1) for v in self.box],
        }


@dataclass(frozen=True)
class Detections:
    """What the detector saw in one frame, with where the time went (milliseconds)."""

    frame_index: int
    image_size: tuple[int, int]  # (height, width)
    items: tuple[Detection, ...]
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)


class Verdict(str, Enum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Decision:
    """Accept or reject, with a reason a technician understands and the item that decided it."""

    verdict: Verdict
    reason: str
    material: str | None = None
    item: Detection | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


@dataclass(frozen=True)
class MaskGeometry:
    """What a mask says about the item's shape, in original-image pixels."""

    area_px: int
    fill_ratio: float  # mask area / box area: a crushed can fills less of its box than an upright one
    orientation_deg: float  # angle of the mask's major axis, degrees in [0, 180)
    centroid: tuple[float, float]


@dataclass(frozen=True)
class Segmentation:
    """The SAM2 mask of an accepted item: a PNG on disk and its geometry."""

    frame_index: int
    mask_path: str | None
    geometry: MaskGeometry
    score: float
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ItemResult:
    """Everything the pipeline decided about one frame; handed to sinks as soon as it is decided."""

    frame_index: int
    source: str
    timestamp: float
    detections: Detections
    decision: Decision
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Deposit:
    """A finished item for the record/outbox (issue 4): the decision plus its mask when there is one."""

    result: ItemResult
    segmentation: Segmentation | None = None
