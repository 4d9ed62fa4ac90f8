"""Where pipeline results become durable deposits: the pipeline's sink, and a tap on its source.

The pipeline hands sinks an :class:`ItemResult` at the decision and a :class:`Deposit` once the
item is complete, without the pixels (frame buffers are reused). :class:`FrameTap` wraps the
source and keeps a copy of each frame's image, keyed by frame index, for the few frames in
flight, so the recorder can encode and store the image the platform needs. :class:`MaskTap`
wraps the segmenter the same way for the mask's pixels (a deposit carries only its geometry),
which the dashboard draws over the frame.

``in_flight`` counts items between their decision and their durable commit: the deploy waits
for it to reach 0 before restarting the service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from rvm_edge import __version__
from rvm_edge.messages import Deposit, Frame, ItemResult, MaskGeometry
from rvm_edge.service.outbox import encode_image, new_deposit_id
from rvm_edge.service.store import Store

log = logging.getLogger(__name__)
EMPTY_REASON = "no item recognised in view"


class FrameTap:
    """A source wrapper that remembers the last ``keep`` frames' pixels (copied: buffers are pooled)."""

    def __init__(self, source: Any, keep: int = 32, fps: float | None = None) -> None:
        self._source = source
        self._images: OrderedDict[int, np.ndarray] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._period = 1.0 / fps if fps else 0.0
        self._halt = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def stop(self) -> None:
        self._halt.set()
        self._source.stop()

    def __iter__(self) -> Iterator[Frame]:
        next_at = time.monotonic()
        for frame in self._source:
            if self._period:  # source.fps: pace a file source like a camera would
                next_at += self._period
                self._halt.wait(max(0.0, next_at - time.monotonic()))
            with self._lock:
                self._images[frame.index] = frame.image.copy()
                while len(self._images) > self._keep:
                    self._images.popitem(last=False)
            yield frame

    def take(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._images.pop(index, None)

    def peek(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._images.get(index)


class MaskTap:
    """A segmenter wrapper that keeps the last mask it made, with its box, until the recorder takes it.

    The pipeline turns a mask into geometry (and a PNG only when a mask folder is configured), so
    the pixels are caught here: a reference to the array SAM2 returned (no copy, no encoding on
    the segmentation thread). At most one mask waits here; the recorder keeps one more for the
    dashboard.
    """

    def __init__(self, segmenter: Any) -> None:
        self._segmenter = segmenter
        self._lock = threading.Lock()
        self._last: tuple[tuple[float, ...], np.ndarray] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._segmenter, name)

    def segment(
        self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]
    ) -> tuple[list[tuple[np.ndarray, float]], dict[str, float]]:
        masks, timings = self._segmenter.segment(image, boxes)
        if masks:
            with self._lock:
                self._last = (tuple(boxes[-1]), masks[-1][0])
        return masks, timings

    def take(self, box: tuple[float, ...]) -> np.ndarray | None:
        """The mask made for ``box`` (the accepted item's), or None when the last mask was another's."""
        with self._lock:
            last, self._last = self._last, None
        return last[1] if last is not None and last[0] == tuple(box) else None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    backend: str

    def to_json(self) -> dict[str, str]:
        return dict(vars(self))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def deposit_data(
    deposit_id: str, hardware_id: str, deposit: Deposit, model: ModelInfo, extra_timings: dict[str, float]
) -> dict[str, Any]:
    """The ``data`` JSON of a deposit: everything the platform (or an auditor) needs about the item."""
    r = deposit.result
    d = r.decision
    seg = deposit.segmentation
    timings = {k: round(v, 3) for k, v in {**r.timings_ms, **extra_timings}.items()}
    mask = None
    if seg is not None:
        g = seg.geometry
        mask = {
            "area_px": g.area_px,
            "fill_ratio": round(g.fill_ratio, 4),
            "orientation_deg": round(g.orientation_deg, 2),
            "centroid": [round(c, 1) for c in g.centroid],
            "score": round(seg.score, 4),
        }
        timings.update({k: round(v, 3) for k, v in seg.timings_ms.items()})
    return {
        "deposit_id": deposit_id,
        "hardware_id": hardware_id,
        "frame_index": r.frame_index,
        "source": r.source,
        "timestamp": iso(r.timestamp),
        "decision": d.verdict.value,
        "reason": d.reason,
        "material": d.material,
        "item": d.item.to_json() if d.item else None,
        "detections": [x.to_json() for x in r.detections.items],
        "image_size": list(r.detections.image_size),
        "mask": mask,
        "model": model.to_json(),
        "timings_ms": timings,
        "app_version": __version__,
    }


class Recorder:
    """The pipeline sink: commits each finished item to the store before acknowledging it."""

    def __init__(
        self,
        store: Store,
        tap: FrameTap,
        hardware_id: str,
        model: ModelInfo,
        max_image_bytes: int,
        offline: Callable[[], bool] = lambda: False,
        points: dict[str, int] | None = None,
        weight_kg: dict[str, float] | None = None,
        record_empty: bool = False,
        observe: Callable[[ItemResult | None, Deposit | None, dict[str, float]], None] | None = None,
        masks: MaskTap | None = None,
    ) -> None:
        self.store, self.tap, self.hardware_id, self.model = store, tap, hardware_id, model
        self.max_image_bytes = max_image_bytes
        self.offline = offline
        self.points = points or {}
        self.weight_kg = weight_kg or {}
        self.record_empty = record_empty
        self.accepting = True  # False in the platform's maintenance mode: nothing is recorded
        self._observe = observe or (lambda r, d, t: None)
        self.masks = masks
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        self.recorded = 0
        self.skipped = 0
        self.failed = 0
        self.commit_ms: deque[float] = deque(maxlen=2000)
        self.record_ms: deque[float] = deque(maxlen=2000)
        self.recent: deque[dict[str, Any]] = deque(maxlen=30)
        self.last_frame: tuple[np.ndarray, ItemResult] | None = None
        # for the dashboard: (frame index, the mask's pixels, or its geometry when they were not
        # caught); only the most recent segmented item's, replaced, never accumulated
        self.last_mask: tuple[int, np.ndarray | MaskGeometry] | None = None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _wanted(self, result: ItemResult) -> bool:
        return self.accepting and (self.record_empty or result.decision.reason != EMPTY_REASON)

    def on_result(self, result: ItemResult) -> None:
        self._observe(result, None, {})
        if self._wanted(result):
            with self._lock:
                self._in_flight.add(result.frame_index)
        image = self.tap.peek(result.frame_index)
        if image is not None and (result.detections.items or self.last_frame is None):
            self.last_frame = (image, result)

    def on_deposit(self, deposit: Deposit) -> None:
        r = deposit.result
        image = self.tap.take(r.frame_index)
        if deposit.segmentation is not None:
            self._keep_mask(r, deposit.segmentation.geometry, image)
        try:
            if not self._wanted(r):
                self.skipped += 1
                return
            self._record(deposit, image)
        except Exception:
            self.failed += 1
            log.exception("could not record item", extra={"frame": r.frame_index})
            raise
        finally:
            with self._lock:
                self._in_flight.discard(r.frame_index)

    def _keep_mask(self, result: ItemResult, geometry: MaskGeometry, image: np.ndarray | None) -> None:
        """Keep the item's mask for the dashboard and show its frame there: the mask arrives after
        newer frames were decided (SAM2 is the slow stage), and it is only drawn on its own frame.
        Costs two reference assignments here; the drawing happens when the dashboard asks."""
        item = result.decision.item
        pixels = self.masks.take(item.box) if self.masks is not None and item is not None else None
        self.last_mask = (result.frame_index, pixels if pixels is not None else geometry)
        if image is not None:
            self.last_frame = (image, result)

    def _record(self, deposit: Deposit, image: np.ndarray | None) -> None:
        r = deposit.result
        t0 = time.perf_counter()
        encoded = encode_image(image, self.max_image_bytes) if image is not None else None
        t1 = time.perf_counter()
        deposit_id = new_deposit_id()
        data = deposit_data(deposit_id, self.hardware_id, deposit, self.model, {"encode_ms": (t1 - t0) * 1e3})
        d = r.decision
        offline_items = None
        if d.accepted and d.material and self.offline():
            offline_items = [
                {
                    "type": d.material,
                    "weight": self.weight_kg.get(d.material, 0.0),
                    "points": self.points.get(d.material, 0),
                }
            ]
        t2 = time.perf_counter()
        self.store.record(
            deposit_id,
            d.verdict.value,
            d.reason,
            data,
            encoded,
            "image/jpeg" if encoded else None,
            frame_index=r.frame_index,
            material=d.material,
            offline_items=offline_items,
            timestamp=data["timestamp"],
        )
        t3 = time.perf_counter()
        self.recorded += 1
        self.commit_ms.append((t3 - t2) * 1e3)
        self.record_ms.append((t3 - t0) * 1e3)
        self.recent.appendleft(
            {
                "deposit_id": deposit_id,
                "time": data["timestamp"],
                "decision": d.verdict.value,
                "reason": d.reason,
                "material": d.material,
                "e2e_ms": round(r.timings_ms.get("e2e_ms", 0.0), 1),
                "offline": offline_items is not None,
            }
        )
        self._observe(None, deposit, {"commit_ms": (t3 - t2) * 1e3, "record_ms": (t3 - t0) * 1e3})
        log.info(
            "deposit recorded",
            extra={"deposit_id": deposit_id, "decision": d.verdict.value, "frame": r.frame_index},
        )
