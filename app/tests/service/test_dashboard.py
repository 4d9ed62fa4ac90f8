"""The dashboard's last frame: boxes, and the SAM2 mask itself (fill and outline) over the item."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from onnx_models import tiny_sam2
from rvm_edge.decision import DecisionConfig, ReasonCode
from rvm_edge.detector import load_detector
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
from rvm_edge.pipeline import CollectingSink, Pipeline, PipelineConfig
from rvm_edge.segment import Sam2Segmenter
from rvm_edge.service.dashboard import MASK_BGR, LiveView, annotate
from rvm_edge.service.deposit import ModelInfo
from rvm_edge.service.recorder import Recorder
from rvm_edge.service.store import Store
from rvm_edge.sources import BufferPool, open_source

GREY = 90
H, W = 120, 160
BOX = (40.0, 20.0, 120.0, 100.0)
CENTRE, AXES = (80, 60), (25, 35)  # an upright ellipse inside the box: a bottle's mask
FILL_PX = (60, 70)  # (y, x): inside the ellipse, off its axis and centre (where the old drawing went)
OUTLINE_PX = (60, CENTRE[0] + AXES[0])  # its right-hand edge
IN_BOX_OFF_MASK_PX = (30, 50)  # inside the box, outside the ellipse, 10 px from the box's edges
FAR_PX = [(5, 5), (110, 150), (60, 150)]  # well outside the box


def ellipse_mask() -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    cv2.ellipse(canvas, CENTRE, AXES, 0, 0, 360, 1, -1)
    return canvas.astype(bool)


def accepted(
    index: int, box: tuple[float, float, float, float] = BOX, frame: Frame | None = None
) -> ItemResult:
    item = Detection(0, "bottle", 0.9, box)
    return ItemResult(
        index,
        "test",
        0.0,
        Detections(index, (H, W), (item,)),
        Decision(Verdict.ACCEPTED, "ok", "plastic", item, code=ReasonCode.ACCEPTED),
        frame=frame,
    )


def decoded(jpeg: bytes | None) -> np.ndarray:
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)


def unchanged(img: np.ndarray, yx: tuple[int, int]) -> bool:
    return int(np.abs(img[yx] - GREY).max()) < 10  # JPEG's error on a flat grey is a few levels


def test_mask_is_filled_translucently_and_outlined_over_the_item() -> None:
    image = np.full((H, W, 3), GREY, np.uint8)
    out = decoded(annotate(image, accepted(7), (7, ellipse_mask())))
    b, g, r = out[FILL_PX]  # grey blended towards orange: red up, blue down, not opaque
    assert r > GREY + 30 and b < GREY - 15 and r < MASK_BGR[2] - 30, (b, g, r)
    b, g, r = out[OUTLINE_PX]  # the outline in full colour
    assert r > 180 and b < 80, (b, g, r)
    b, g, r = out[int(BOX[1]) + 40, int(BOX[0])]  # the accepted box's left edge: green, drawn on top
    assert g > 150 and r < 100 and b < 100, (b, g, r)
    assert unchanged(out, IN_BOX_OFF_MASK_PX)  # the mask, not its box, is filled
    for yx in FAR_PX:
        assert unchanged(out, yx), yx
    assert np.array_equal(image, np.full((H, W, 3), GREY, np.uint8))  # the recorder's copy is untouched


def test_without_a_mask_only_the_box_is_drawn() -> None:
    image = np.full((H, W, 3), GREY, np.uint8)
    for mask in (None, (6, ellipse_mask())):  # segmentation off; a mask of another frame
        out = decoded(annotate(image, accepted(7), mask))
        b, g, r = out[int(BOX[1]) + 40, int(BOX[0])]
        assert g > 150 and r < 100 and b < 100, (b, g, r)
        for yx in (FILL_PX, OUTLINE_PX, IN_BOX_OFF_MASK_PX, *FAR_PX):
            assert unchanged(out, yx), (mask is not None, yx)


def test_live_view_keeps_its_own_copy_of_the_frame_and_the_mask_from_the_message() -> None:
    """The frame's buffer goes back to the camera's pool after the deposit (and is overwritten by
    the next frame): the dashboard still shows the segmented item's own pixels and mask."""
    pool = BufferPool()
    frame = Frame(7, np.full((H, W, 3), GREY, np.uint8), "test", 0.0, 0.0, pool)
    live = LiveView()
    assert live.frame_jpeg() is None  # nothing seen yet
    r = accepted(7, frame=frame)
    live.on_result(r)
    seg = Segmentation(7, None, MaskGeometry(1, 0.5, 90.0, (80.0, 60.0)), 0.9, {}, ellipse_mask())
    live.on_deposit(Deposit(r, seg))
    frame.release()  # the pipeline's release: the buffer is reused for a white frame
    buf = pool.acquire((H, W, 3))
    assert buf is not None
    buf[:] = 255
    out = decoded(live.frame_jpeg())
    assert unchanged(out, FAR_PX[0])  # still grey: a copy, not the pool's buffer
    b, g, r_ = out[FILL_PX]  # and the mask from the Segmentation message is drawn
    assert r_ > GREY + 30 and b < GREY - 15, (b, g, r_)
    mask = live.last_mask()
    assert mask is not None and mask[0] == 7


def test_the_service_wiring_shows_the_last_segmented_frame_with_its_mask(
    tmp_path: Path, one_bottle_model: Path, frames_dir: Path
) -> None:
    """Source -> detector -> SAM2 (tiny, real ONNX) -> recorder, as the runner wires them: the
    recorder keeps the last segmented item's mask pixels, and the dashboard draws them."""
    encoder, decoder = tiny_sam2(tmp_path / "sam2")
    store = Store(tmp_path / "data")
    live, seen = LiveView(), CollectingSink()
    recorder = Recorder(
        store, "hw-1", ModelInfo("fixed", "1", "ab" * 32, "onnxruntime"), 100_000, listeners=[live.recorded]
    )
    pipe = Pipeline(
        open_source(str(frames_dir)),
        load_detector(one_bottle_model),
        DecisionConfig(),
        Sam2Segmenter(encoder, decoder),
        [recorder, live, seen],
        PipelineConfig(warmup_runs=0),
    )
    pipe.start()
    try:
        assert pipe.wait(60)
    finally:
        pipe.stop()
        store.close()
    assert pipe.failure is None and pipe.stats.segmented == 5
    assert [d["deposit_id"] for d in live.recent()] and len(live.recent()) == recorder.recorded == 5
    mask = live.last_mask()
    assert mask is not None
    index, pixels = mask
    assert index == 4 and isinstance(pixels, np.ndarray)  # the newest mask only, as pixels
    assert pixels.shape == (H, W) and pixels.dtype == bool and pixels[H // 2, W // 2]
    out = decoded(live.frame_jpeg())
    image = cv2.imread(str(sorted(frames_dir.iterdir())[index]))
    assert image is not None
    plain = decoded(annotate(image, seen.results[index], (index, MaskGeometry(0, 0.0, 0.0, (0.0, 0.0)))))
    # the tiny decoder's mask is a centred disc: the frame's centre is tinted orange, a corner is not
    assert out[H // 2 + 20, W // 2, 2] > plain[H // 2 + 20, W // 2, 2] + 30
    assert np.abs(out[5, 5] - plain[5, 5]).max() < 10
