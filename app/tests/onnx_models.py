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


def tiny_sam2(folder: Path, size: int = 64) -> tuple[Path, Path]:
    """Encoder/decoder pair with SAM2's ONNX interface (names, ranks, prompt inputs) at a tiny size.

    The decoder's mask is a fixed disc (positive logits inside) plus 0 x every input, so the flow
    (encode once, decode per box, resize to the frame) is exercised exactly as with real SAM2.
    """
    f = TensorProto.FLOAT
    low = size // 4
    enc_nodes = [
        helper.make_node("AveragePool", ["image"], ["image_embed"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("AveragePool", ["image"], ["high_res_feats_0"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("AveragePool", ["image"], ["high_res_feats_1"], kernel_shape=[8, 8], strides=[8, 8]),
    ]
    enc = helper.make_graph(
        enc_nodes,
        "tiny_sam2_encoder",
        [helper.make_tensor_value_info("image", f, [1, 3, size, size])],
        [
            helper.make_tensor_value_info("image_embed", f, [1, 3, size // 16, size // 16]),
            helper.make_tensor_value_info("high_res_feats_0", f, [1, 3, size // 4, size // 4]),
            helper.make_tensor_value_info("high_res_feats_1", f, [1, 3, size // 8, size // 8]),
        ],
    )
    yy, xx = np.mgrid[0:low, 0:low]
    disc = np.where((yy - low / 2) ** 2 + (xx - low / 2) ** 2 < (low / 4) ** 2, 5.0, -5.0).astype(np.float32)
    masks = np.stack([disc, -np.abs(disc), disc])[None]  # (1, 3, low, low); the third scores best
    inputs = [
        ("image_embed", [1, 3, size // 16, size // 16]),
        ("high_res_feats_0", [1, 3, size // 4, size // 4]),
        ("high_res_feats_1", [1, 3, size // 8, size // 8]),
        ("point_coords", [1, "n", 2]),
        ("point_labels", [1, "n"]),
        ("mask_input", [1, 1, low, low]),
        ("has_mask_input", [1]),
    ]
    dec_nodes, sums = [], []
    for name, _ in inputs:
        dec_nodes.append(helper.make_node("ReduceSum", [name], [f"s_{name}"], keepdims=0))
        sums.append(f"s_{name}")
    dec_nodes += [
        helper.make_node("Sum", sums, ["total"]),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["masks_const", "nothing"], ["masks"]),
        helper.make_node("Add", ["scores_const", "nothing"], ["iou_predictions"]),
    ]
    dec = helper.make_graph(
        dec_nodes,
        "tiny_sam2_decoder",
        [helper.make_tensor_value_info(n, f, s) for n, s in inputs],
        [
            helper.make_tensor_value_info("masks", f, [1, 3, low, low]),
            helper.make_tensor_value_info("iou_predictions", f, [1, 3]),
        ],
        [
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(masks, "masks_const"),
            numpy_helper.from_array(np.array([[0.2, 0.1, 0.9]], np.float32), "scores_const"),
        ],
    )
    paths = []
    for graph, name in ((enc, "encoder.onnx"), (dec, "decoder.onnx")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(folder / name))
        paths.append(folder / name)
    return paths[0], paths[1]
