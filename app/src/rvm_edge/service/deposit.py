"""What a deposit is made of on its way to the platform: its id, its JSON data, its JPEG, and
the offline transaction an accepted item queues while the platform cannot be reached.

Pure functions and small values, used by the recorder (which makes deposits) and the outbox
sender (which re-encodes an image over the platform's size limit); nothing here does I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from rvm_edge import __version__
from rvm_edge.messages import Decision, Deposit

IMAGE_TYPE = "image/jpeg"
_PLACEHOLDER: bytes | None = None


def new_deposit_id() -> str:
    """The deposit's idempotency key: the platform spots a resent deposit by it."""
    return str(uuid.uuid4())


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def placeholder_jpeg() -> bytes:
    """The smallest valid JPEG: sent in place of an image that was pruned under the disk quota."""
    global _PLACEHOLDER
    if _PLACEHOLDER is None:
        _ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
        _PLACEHOLDER = buf.tobytes()
    return _PLACEHOLDER


def encode_image(image: np.ndarray, max_bytes: int, quality: int = 90) -> bytes:
    """JPEG under ``max_bytes`` (the platform's 5 MB limit): lower quality first, then smaller."""
    img = image
    q = quality
    while True:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:
            raise ValueError("JPEG encoding failed")
        if buf.nbytes <= max_bytes:
            return buf.tobytes()
        if q > 60:
            q -= 15
        else:
            h, w = img.shape[:2]
            img = cv2.resize(img, (max(1, int(w * 0.7)), max(1, int(h * 0.7))), interpolation=cv2.INTER_AREA)


def shrink_encoded(data: bytes, max_bytes: int) -> bytes:
    """An already encoded image over the limit, re-encoded smaller (or the placeholder if unreadable)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return placeholder_jpeg()
    return encode_image(img, max_bytes)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    backend: str

    def to_json(self) -> dict[str, str]:
        return dict(vars(self))


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
        "reason_code": d.code.value,
        "material": d.material,
        "item": d.item.to_json() if d.item else None,
        "detections": [x.to_json() for x in r.detections.items],
        "image_size": list(r.detections.image_size),
        "mask": mask,
        "model": model.to_json(),
        "timings_ms": timings,
        "app_version": __version__,
    }


@dataclass
class OfflinePricing:
    """The offline transaction of an accepted item (type, weight, points), made only while the
    platform is unreachable (``offline()``): it is replayed through ``sync-offline`` later, so the
    user's points are not lost. ``points`` and ``weight_kg`` are per material (config
    ``decision.points`` / ``decision.weight_kg``, live on SIGHUP)."""

    points: Mapping[str, int] = field(default_factory=dict)
    weight_kg: Mapping[str, float] = field(default_factory=dict)
    offline: Callable[[], bool] = lambda: False

    def items(self, decision: Decision) -> list[dict[str, Any]] | None:
        if not (decision.accepted and decision.material and self.offline()):
            return None
        m = decision.material
        return [{"type": m, "weight": self.weight_kg.get(m, 0.0), "points": self.points.get(m, 0)}]
