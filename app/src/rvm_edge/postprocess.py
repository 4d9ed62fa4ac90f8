"""Decode YOLO11 output, non-maximum suppression and mapping boxes back to the original image.

Pure numpy over arrays, so it is trivially tested and benchmarked. The semantics follow
ultralytics' ``non_max_suppression`` (single label per box, class-aware NMS via a per-class
coordinate offset, ``conf > threshold``, ``IoU > threshold`` suppresses) and ``scale_boxes``.
"""

from __future__ import annotations

import numpy as np

from rvm_edge.preprocess import LetterboxGeometry

MAX_WH = 7680.0  # ultralytics' class offset: boxes of different classes never overlap after it
MAX_NMS = 30000  # candidates kept before NMS, as in ultralytics


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices of kept boxes, highest score first. IoU is computed vectorised per pick."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        # np.maximum(.., 0) rather than np.clip: same result, a fraction of clip's per-call overhead
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(
    output: np.ndarray,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.7,
    max_det: int = 300,
    agnostic: bool = False,
) -> np.ndarray:
    """One image's raw YOLO11 output ``(4 + nc, anchors)`` -> ``(k, 6)`` rows of x1, y1, x2, y2, conf, cls
    in model-input pixels, best first."""
    if output.ndim != 2 or output.shape[0] < 5:
        raise ValueError(f"expected YOLO output of shape (4 + classes, anchors), got {output.shape}")
    scores = output[4:]
    cls = scores.argmax(0)
    conf = scores[cls, np.arange(scores.shape[1])]
    sel = np.flatnonzero(conf > conf_threshold)
    if sel.size == 0:
        return np.zeros((0, 6), np.float32)
    if sel.size > MAX_NMS:
        sel = sel[np.argsort(-conf[sel], kind="stable")[:MAX_NMS]]
    cx, cy, w, h = output[0, sel], output[1, sel], output[2, sel], output[3, sel]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    conf, cls = conf[sel], cls[sel]
    offset = 0.0 if agnostic else cls[:, None].astype(boxes.dtype) * MAX_WH
    keep = nms(boxes + offset, conf, iou_threshold)[:max_det]
    return np.concatenate([boxes[keep], conf[keep, None], cls[keep, None].astype(boxes.dtype)], axis=1)


def scale_boxes(boxes: np.ndarray, g: LetterboxGeometry) -> np.ndarray:
    """Model-input boxes -> original-image boxes, clipped to the image (in place, also returned).

    Like ultralytics, x and y are divided by their own rounded scale (new_w / orig_w, new_h / orig_h).
    """
    boxes[:, [0, 2]] -= g.pad_x
    boxes[:, [1, 3]] -= g.pad_y
    boxes[:, [0, 2]] /= g.new_w / g.orig_w
    boxes[:, [1, 3]] /= g.new_h / g.orig_h
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, g.orig_w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, g.orig_h)
    return boxes
