"""The pipeline sink: what a deposit's data carries, and which items become deposits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import cv2
import numpy as np

from rvm_edge.decision import ReasonCode
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
from rvm_edge.service.deposit import ModelInfo, OfflinePricing, deposit_data
from rvm_edge.service.recorder import Recorded, Recorder
from rvm_edge.service.store import DB_NAME, Store

MODEL = ModelInfo("yolo-lab", "3", "ab" * 32, "onnxruntime")
BOTTLE = Detection(0, "bottle", 0.9, (10.0, 10.0, 40.0, 60.0))


def result(
    index: int, decision: Decision, items: tuple[Detection, ...] = (BOTTLE,), frame: Frame | None = None
) -> ItemResult:
    return ItemResult(
        index, "folder", 1_795_000_000.0, Detections(index, (80, 60), items), decision, {"e2e_ms": 9.5}, frame
    )


def test_deposit_data_carries_decision_detections_mask_model_and_timings() -> None:
    seg = Segmentation(
        3, None, MaskGeometry(900, 0.61234, 88.123, (25.0, 35.0)), 0.97, {"segment_ms": 1500.0}
    )
    r = result(
        3,
        Decision(
            Verdict.ACCEPTED, "plastic bottle, 90% confidence", "plastic", BOTTLE, code=ReasonCode.ACCEPTED
        ),
    )
    data = deposit_data("id-1", "hw-1", Deposit(r, seg), MODEL, {"encode_ms": 1.2})
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert (data["deposit_id"], data["hardware_id"], data["decision"], data["material"]) == (
        "id-1",
        "hw-1",
        "ACCEPTED",
        "plastic",
    )
    assert data["reason"] == "plastic bottle, 90% confidence" and data["reason_code"] == "accepted"
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
    offline = [False]
    events: list[Recorded] = []
    pricing = OfflinePricing({"plastic": 7}, {}, lambda: offline[0])
    rec = Recorder(store, "hw-1", MODEL, 5_000_000, pricing, listeners=[events.append])
    accepted = Decision(Verdict.ACCEPTED, "ok", "plastic", BOTTLE, code=ReasonCode.ACCEPTED)
    # the empty intake is known by its code: a reworded reason must not change what is recorded
    empty = Decision(Verdict.REJECTED, "nothing to see", code=ReasonCode.EMPTY)
    for i, d in enumerate([accepted, empty, accepted, accepted]):
        frame = Frame(i, np.full((80, 60, 3), i * 60, np.uint8), "folder", 0.0, 0.0)
        r = result(i, d, (BOTTLE,) if d is accepted else (), frame)
        if i == 2:
            rec.accepting = False  # maintenance mode
        if i == 3:
            rec.accepting, offline[0] = True, True  # back, but the platform is unreachable
        rec.on_result(r)
        assert rec.in_flight == (1 if d is accepted and i != 2 else 0)
        rec.on_deposit(Deposit(r, None))
        assert rec.in_flight == 0
        frame.release()
    conn = sqlite3.connect(str(tmp_path / DB_NAME))
    rows = conn.execute("SELECT frame_index, status, image FROM deposits ORDER BY seq").fetchall()
    assert [r[:2] for r in rows] == [
        (0, "ACCEPTED"),
        (3, "ACCEPTED"),
    ]  # not the empty frame, not in maintenance
    # each deposit carries its own frame's pixels (the frame travelled in the message)
    for (index, _status, jpeg), want in zip(rows, (0, 180), strict=True):
        pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert pixels.shape == (80, 60, 3) and abs(int(pixels.mean()) - want) <= 2, index
    offline_items = [json.loads(r[0]) for r in conn.execute("SELECT items FROM offline_transactions")]
    assert offline_items == [[{"type": "plastic", "weight": 0.0, "points": 7}]]
    assert (rec.recorded, rec.skipped) == (2, 2)
    assert [(e.deposit.result.frame_index, e.offline) for e in events] == [(0, False), (3, True)]
    assert set(events[0].timings_ms) == {"encode_ms", "commit_ms", "record_ms"}


def test_record_empty_records_the_empty_intake_too(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rec = Recorder(store, "hw-1", MODEL, 5_000_000, record_empty=True)
    r = result(0, Decision(Verdict.REJECTED, "no item recognised in view", code=ReasonCode.EMPTY), ())
    rec.on_result(r)
    rec.on_deposit(Deposit(r, None))
    assert rec.recorded == 1
    row = sqlite3.connect(str(tmp_path / DB_NAME)).execute("SELECT status, image FROM deposits").fetchone()
    assert row == ("REJECTED", None)  # no frame in the message: recorded without an image


def test_a_failing_listener_does_not_undo_the_commit(tmp_path: Path) -> None:
    def broken(_event: Recorded) -> None:
        raise RuntimeError("dashboard bug")

    store = Store(tmp_path)
    rec = Recorder(store, "hw-1", MODEL, 5_000_000, listeners=[broken])
    r = result(0, Decision(Verdict.ACCEPTED, "ok", "plastic", BOTTLE, code=ReasonCode.ACCEPTED))
    rec.on_result(r)
    rec.on_deposit(Deposit(r, None))
    assert (rec.recorded, rec.failed, rec.in_flight) == (1, 0, 0)
