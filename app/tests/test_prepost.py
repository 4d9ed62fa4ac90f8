"""Letterbox, decode and NMS: the arithmetic that decides where a box lands on the original image."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_models import yolo_output
from rvm_edge.postprocess import decode, nms, scale_boxes
from rvm_edge.preprocess import PAD_VALUE, Preprocessor, letterbox_geometry


@pytest.mark.parametrize(
    ("h", "w", "size", "expected"),
    [
        # (orig h, w) -> (new_w, new_h, pad_x, pad_y), as ultralytics' LetterBox computes them
        (720, 1280, 320, (320, 180, 0, 70)),
        (480, 640, 640, (640, 480, 0, 80)),
        (333, 517, 320, (320, 206, 0, 57)),
        (640, 480, 320, (240, 320, 40, 0)),
        (101, 50, 320, (158, 320, 81, 0)),
    ],
)
def test_letterbox_geometry_matches_ultralytics_rounding(h: int, w: int, size: int, expected: tuple) -> None:
    g = letterbox_geometry(h, w, size, size)
    assert (g.new_w, g.new_h, g.pad_x, g.pad_y) == expected


def test_preprocess_places_image_and_pads_grey_in_rgb_order() -> None:
    pre = Preprocessor(64, 64)
    img = np.zeros((32, 64, 3), np.uint8)
    img[..., 0] = 255  # pure blue in BGR
    tensor, (g,) = pre([img])
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert (g.pad_x, g.pad_y) == (0, 16)
    inside = tensor[0, :, 32, 32]
    np.testing.assert_allclose(inside, [0.0, 0.0, 1.0])  # RGB: blue is the last channel
    np.testing.assert_allclose(tensor[0, :, 0, 0], [PAD_VALUE / 255.0] * 3, rtol=1e-6)


def test_preprocess_reuses_its_buffers() -> None:
    pre = Preprocessor(64, 64)
    a, _ = pre([np.zeros((50, 70, 3), np.uint8)])
    b, _ = pre([np.full((50, 70, 3), 200, np.uint8)])
    assert a.base is b.base or np.shares_memory(a, b)
    assert b[0, 0, 32, 32] == pytest.approx(200 / 255.0)


def test_preprocess_refuses_grey_images() -> None:
    with pytest.raises(ValueError, match=r"BGR uint8 image of shape \(H, W, 3\)"):
        Preprocessor(64, 64)([np.zeros((10, 10), np.uint8)])


def test_nms_suppresses_overlaps_only_above_threshold() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    # IoU(0,1) = 90/110 = 0.82; IoU(3,0) = 0.5; IoU(3,1) = 45/105 = 0.43; box 2 overlaps nothing
    assert nms(boxes, scores, 0.7).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.45).tolist() == [3, 1, 2]  # 3 removes 0; 1 survives 3 (0.43)
    assert nms(boxes, scores, 0.4).tolist() == [3, 2]


def test_decode_keeps_best_class_and_is_class_aware() -> None:
    out = yolo_output(
        64,
        3,
        8,
        [
            (0, 0.9, (20, 20, 10, 10)),
            (0, 0.6, (21, 20, 10, 10)),  # same class, overlaps the first: suppressed
            (1, 0.8, (21, 20, 10, 10)),  # other class, same place: kept (class-aware NMS)
            (2, 0.2, (50, 50, 10, 10)),  # below the threshold
        ],
    )
    rows = decode(out[0], conf_threshold=0.25, iou_threshold=0.7)
    assert rows[:, 5].tolist() == [0, 1]
    np.testing.assert_allclose(rows[0, :5], [15, 15, 25, 25, 0.9], rtol=1e-6)
    assert decode(out[0], conf_threshold=0.95).shape == (0, 6)


def test_scale_boxes_maps_back_to_original_pixels_and_clips() -> None:
    g = letterbox_geometry(720, 1280, 320, 320)  # gain 0.25, pad_y 70
    boxes = np.array([[0.0, 70.0, 160.0, 160.0], [300.0, 200.0, 330.0, 260.0]])
    scale_boxes(boxes, g)
    np.testing.assert_allclose(boxes[0], [0, 0, 640, 360])
    np.testing.assert_allclose(boxes[1], [1200, 520, 1280, 720])  # x2 1320 and y2 760 clipped
