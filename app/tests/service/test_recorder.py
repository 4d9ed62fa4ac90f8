"""The pipeline sink: what a deposit's data carries, and which items become deposits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from rvm_edge.messages import (
    Decision,
    Deposit,
    Detection,
    Detections,
    Frame,
    ItemResult,
    MaskGeometry,
    Segmentation,
    Verdict,
)
from rvm_edge.service.recorder import FrameTap, ModelInfo, Recorder, deposit_data
from rvm_edge.service.store import DB_NAME, Store

MODEL = ModelInfo("yolo-lab", "3", "ab" * 32, "onnxruntime")
BOTTLE = Detection(0, "bottle", 0.9, (10.0, 10.0, 40.0, 60.0))


def result(index: int, decision: Decision, items: tuple[Detection, ...] = (BOTTLE,)) -> ItemResult:
    return ItemResult(
        index, "folder", 1_795_000_000.0, Detections(index, (80, 60), items), decision, {"e2e_ms": 9.5}
    )


class ListSource:
    live = False

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(self.n):
            yield Frame(i, np.full((80, 60, 3), i, np.uint8), "folder", 0.0, 0.0)

    def stop(self) -> None:
        pass


def test_deposit_data_carries_decision_detections_mask_model_and_timings() -> None:
    seg = Segmentation(
        3, None, MaskGeometry(900, 0.61234, 88.123, (25.0, 35.0)), 0.97, {"segment_ms": 1500.0}
    )
    r = result(3, Decision(Verdict.ACCEPTED, "plastic bottle, 90% confidence", "plastic", BOTTLE))
    data = deposit_data("id-1", "hw-1", Deposit(r, seg), MODEL, {"encode_ms": 1.2})
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert (data["deposit_id"], data["hardware_id"], data["decision"], data["material"]) == (
        "id-1",
        "hw-1",
        "ACCEPTED",
        "plastic",
    )
    assert data["reason"] == "plastic bottle, 90% confidence"
    assert data["detections"] == [BOTTLE.to_json()] and data["item"] == BOTTLE.to_json()
    assert data["mask"] == {
        "area_px": 900,
        "fill_ratio": 0.6123,
        "orientation_deg": 88.12,
        "centroid": [25.0, 35.0],
        "score": 0.97,
    }
    assert data["model"] == {
        "name": "yolo-lab",
        "version": "3",
        "sha256": "ab" * 32,
        "backend": "onnxruntime",
    }
    assert data["timings_ms"] == {"e2e_ms": 9.5, "encode_ms": 1.2, "segment_ms": 1500.0}
    assert data["timestamp"].endswith("+00:00")


def test_which_items_are_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path)
    tap = FrameTap(ListSource(4))
    frames = list(tap)
    offline = [False]
    rec = Recorder(store, tap, "hw-1", MODEL, 5_000_000, offline=lambda: offline[0], points={"plastic": 7})
    accepted = Decision(Verdict.ACCEPTED, "ok", "plastic", BOTTLE)
    empty = Decision(Verdict.REJECTED, "no item recognised in view")
    for f, d in zip(frames, [accepted, empty, accepted, accepted], strict=True):
        r = result(f.index, d, (BOTTLE,) if d is accepted else ())
        if f.index == 2:
            rec.accepting = False  # maintenance mode
        if f.index == 3:
            rec.accepting, offline[0] = True, True  # back, but the platform is unreachable
        rec.on_result(r)
        assert rec.in_flight == (1 if d is accepted and f.index != 2 else 0)
        rec.on_deposit(Deposit(r, None))
        assert rec.in_flight == 0
    conn = sqlite3.connect(str(tmp_path / DB_NAME))
    rows = conn.execute("SELECT frame_index, status, length(image) > 0 FROM deposits ORDER BY seq").fetchall()
    assert rows == [(0, "ACCEPTED", 1), (3, "ACCEPTED", 1)]  # not the empty frame, not in maintenance
    offline_items = [json.loads(r[0]) for r in conn.execute("SELECT items FROM offline_transactions")]
    assert offline_items == [[{"type": "plastic", "weight": 0.0, "points": 7}]]
    assert (rec.recorded, rec.skipped) == (2, 2)
