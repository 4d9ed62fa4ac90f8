"""Small real ONNX models for tests, built with onnx.helper (no download, no torch).

``fixed_detector`` is a YOLO11-shaped model whose raw output is a constant chosen by the test:
it runs in every backend like a real detector (same input/output layout and ultralytics'
``names`` metadata), and because its output is known, a test knows exactly which boxes the
project's decode/NMS/letterbox must produce in original-image pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def yolo_output(
    size: int, classes: int, anchors: int, objects: list[tuple[int, float, tuple[float, ...]]]
) -> np.ndarray:
    """Raw ``(1, 4 + classes, anchors)`` output with ``objects`` = (class, score, (cx, cy, w, h)) in
    model-input pixels, one per anchor; the other anchors score 0.001 (below any threshold)."""
    out = np.zeros((1, 4 + classes, anchors), np.float32)
    out[0, 4:, :] = 0.001
    out[0, 0:2, :] = size / 2
    out[0, 2:4, :] = 4
    for a, (cls, score, (cx, cy, w, h)) in enumerate(objects):
        out[0, 0:4, a] = (cx, cy, w, h)
        out[0, 4 + cls, a] = score
    return out


def fixed_detector(
    path: Path,
    output: np.ndarray,
    size: int,
    names: list[str],
    dynamic_batch: bool = False,
) -> Path:
    """Write an ONNX model: images (N,3,size,size) -> output0 = constant + 0 * mean(images)."""
    batch: int | str = "batch" if dynamic_batch else 1
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])
    out = helper.make_tensor_value_info(
        "output0", TensorProto.FLOAT, [batch, output.shape[1], output.shape[2]]
    )
    nodes = [
        helper.make_node("ReduceMean", ["images", "axes"], ["mean"], keepdims=1),  # (N,1,1,1)
        helper.make_node("Reshape", ["mean", "shape3"], ["mean3"]),  # (N,1,1)
        helper.make_node("Mul", ["mean3", "zero"], ["zeroed"]),
        helper.make_node("Add", ["zeroed", "const"], ["output0"]),  # broadcast to (N, C, A)
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(output.astype(np.float32), "const"),
    ]
    graph = helper.make_graph(nodes, "fixed_yolo", [images], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    names_meta = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(names)) + "}"
    for k, v in {"names": names_meta, "imgsz": f"[{size}, {size}]", "task": "detect"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
