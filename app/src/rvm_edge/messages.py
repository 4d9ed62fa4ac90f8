"""The message types that travel between pipeline stages, one per hop.

Frame -> Detections -> Decision -> Segmentation -> Deposit: a reader follows one item from the
camera to the platform by following these types. They are immutable so a stage can hand one to
the next thread without copying and without locks; the one exception is a :class:`Frame`'s pixels,
which the frame owns until it is released (capture buffers are reused).

Everything a sink needs travels in the messages: the :class:`ItemResult` carries its frame, the
:class:`Segmentation` carries the mask's pixels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rvm_edge.decision import ReasonCode


class FrameReleasedError(RuntimeError):
    """A stage read a frame's pixels after they went back to the buffer pool (a bug in that stage)."""


class Frame:
    """One image from a source. ``image`` is BGR uint8 (OpenCV's order); ``index`` counts from 0.

    The frame owns its pixels until :meth:`release`: capture sources read into reused buffers,
    so after the release the buffer may already hold a newer frame. The pipeline releases a
    frame once every sink has had the item's :class:`Deposit`; a sink that wants the pixels for
    longer keeps a copy. Reading ``image`` after the release raises :class:`FrameReleasedError`
    instead of silently showing another frame's pixels.
    """

    __slots__ = ("_image", "_lock", "_pool", "index", "source", "t_read", "timestamp")

    def __init__(
        self,
        index: int,
        image: np.ndarray,
        source: str,
        timestamp: float,  # time.time() when read: wall clock, for records
        t_read: float,  # time.perf_counter() when read: for per-stage timings
        pool: Any = None,  # the BufferPool the image came from, None when it is not reused
    ) -> None:
        self.index, self.source, self.timestamp, self.t_read = index, source, timestamp, t_read
        self._image: np.ndarray | None = image
        self._pool = pool
        self._lock = threading.Lock()

    @property
    def image(self) -> np.ndarray:
        image = self._image
        if image is None:
            raise FrameReleasedError(f"frame {self.index}: its pixels were released (copy what you keep)")
        return image

    @property
    def released(self) -> bool:
        return self._image is None

    def release(self) -> None:
        """Hand the pixels back (to the pool when they came from one); later calls do nothing."""
        with self._lock:
            image, self._image = self._image, None
        if image is not None and self._pool is not None:
            self._pool.release(image)

    def __repr__(self) -> str:
        return f"Frame(index={self.index}, source={self.source!r}, released={self.released})"


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
    """Accept or reject, with a reason a technician understands, the same reason as a code that
    programs match on (never the text: it is reworded for people), and the item that decided it."""

    verdict: Verdict
    reason: str
    material: str | None = None
    item: Detection | None = None
    code: ReasonCode = field(kw_only=True)

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
    """The SAM2 mask of an accepted item: its pixels (boolean, the frame's size; made for this item
    and never reused), a PNG on disk when a mask folder is set, and its geometry."""

    frame_index: int
    mask_path: str | None
    geometry: MaskGeometry
    score: float
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ItemResult:
    """Everything the pipeline decided about one frame; handed to sinks as soon as it is decided.

    ``frame`` is the frame itself: its pixels are valid until the item's :class:`Deposit` has
    reached every sink (see :class:`Frame`); None where a result is made without one (tests).
    """

    frame_index: int
    source: str
    timestamp: float
    detections: Detections
    decision: Decision
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)
    frame: Frame | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Deposit:
    """A finished item for the record/outbox (issue 4): the decision plus its mask when there is one."""

    result: ItemResult
    segmentation: Segmentation | None = None
