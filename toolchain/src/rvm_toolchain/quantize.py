"""Static INT8 of a YOLO detector ONNX, with the detection head's decoding kept in float.

Why not quantise everything: the head ends by concatenating box coordinates (0..imgsz pixels) and
class scores (0..1) into ``output0``. One INT8 scale for both rounds every score to 0, so a naive
static INT8 model detects nothing (mAP 0). The convolutions of the head are quantised like the rest
of the network (each tensor gets its own scale); everything after them inside the head (reshape,
concat, DFL softmax, box decoding, sigmoid, the final concat) runs in float.

The result is a QDQ model (QuantizeLinear/DequantizeLinear pairs around INT8 weights and
activations): onnxruntime runs it with INT8 kernels and OpenVINO and TensorRT read the same format.
Calibration feeds frames through exactly the device's letterbox (``rvm_edge.preprocess``).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rvm_edge.preprocess import Preprocessor

_CONV_BRANCH = re.compile(r"(one2one_)?cv\d+\.\d+/")
_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MIN_CALIB_IMAGES = 8


class QuantizeError(RuntimeError):
    """Quantisation cannot proceed: bad calibration folder or an unexpected model layout."""


@dataclass(frozen=True)
class QuantizeResult:
    """What was done, for the manifest's ``source``."""

    calibration_images: int
    head_prefix: str
    excluded_nodes: tuple[str, ...]
    method: str
    per_channel: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "QDQ",
            "weights": "int8 per-channel" if self.per_channel else "int8 per-tensor",
            "activations": "uint8",
            "calibration": self.method,
            "calibration_images": self.calibration_images,
            "float_head": f"{len(self.excluded_nodes)} decode nodes under {self.head_prefix} kept in float",
        }


def calibration_images(folder: Path, limit: int = 200) -> list[Path]:
    """Image files of the calibration folder, sorted (the same folder always gives the same model)."""
    if not folder.is_dir():
        raise QuantizeError(
            f"{folder}: calibration folder not found; pass --calib DIR with frames like the device sees "
            "(e.g. `python -m rvm_toolchain.synth --out DIR --frames 64 --split calib`)"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if len(files) < MIN_CALIB_IMAGES:
        raise QuantizeError(
            f"{folder}: {len(files)} image(s) for calibration, need at least {MIN_CALIB_IMAGES} "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return files


def head_decode_nodes(model: Any) -> tuple[str, tuple[str, ...]]:
    """The head's name prefix and the nodes that decode its outputs (everything but its conv branches).

    The head is the module that produces ``output0``; ultralytics names its nodes ``/model.<i>/...``
    and its per-scale convolution branches ``cv2.<k>``/``cv3.<k>`` (box and class). Those branches are
    quantised; the rest of the head (concat, reshape, DFL, box decoding, sigmoid) stays in float.
    """
    producers = {t: n for n in model.graph.node for t in n.output}
    producer = producers.get("output0")
    while producer is not None and producer.op_type in _QDQ_OPS:  # a quantised output: look through Q/DQ
        producer = producers.get(producer.input[0])
    if producer is None or not producer.name.startswith("/model."):
        raise QuantizeError(
            "no node named /model.<i>/... produces 'output0': not an ultralytics detector export"
        )
    prefix = "/".join(producer.name.split("/")[:2]) + "/"
    excluded = tuple(
        n.name
        for n in model.graph.node
        if n.name.startswith(prefix)
        and n.op_type not in _QDQ_OPS
        and not _CONV_BRANCH.match(n.name[len(prefix) :])
    )
    return prefix, excluded


def quantized_decode_tensors(model: Any) -> list[str]:
    """Tensors computed by the head's decoding that pass through QuantizeLinear (a good model has none).

    A non-empty answer means box coordinates or class scores are rounded to an 8-bit grid: the
    failure that gives mAP 0.
    """
    _, decode = head_decode_nodes(model)
    names = set(decode)
    produced = {t for n in model.graph.node if n.name in names for t in n.output}
    return [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in produced]


class _FolderReader:
    """onnxruntime CalibrationDataReader over a folder of frames, letterboxed like on the device."""

    def __init__(self, files: list[Path], input_name: str, imgsz: int) -> None:
        self.files, self.input_name = files, input_name
        self.pre = Preprocessor(imgsz, imgsz)
        self._it: Iterator[Path] = iter(files)

    def get_next(self) -> dict[str, np.ndarray] | None:
        for path in self._it:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise QuantizeError(f"{path}: unreadable image in the calibration folder")
            tensor, _ = self.pre([image])
            return {self.input_name: tensor.copy()}
        return None

    def rewind(self) -> None:
        self._it = iter(self.files)


def quantize_detector(
    fp32: Path, out: Path, calib_dir: Path, per_channel: bool = True, float_head: bool = True
) -> QuantizeResult:
    """Write a static-INT8 QDQ copy of ``fp32`` to ``out``, calibrated on ``calib_dir``.

    ``float_head=False`` quantises the head's decoding too: the naive model whose scores collapse,
    kept only so that the difference can be measured and tested.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    files = calibration_images(calib_dir)
    model = onnx.load(str(fp32))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    imgsz = inputs[0].type.tensor_type.shape.dim[-1].dim_value
    with tempfile.TemporaryDirectory(prefix="rvm-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph cleanup first, as onnxruntime recommends for static quantisation
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        prefix, excluded = head_decode_nodes(onnx.load(str(prepared)))
        if not float_head:
            excluded = ()
        # keep the metadata (class names, stride, imgsz) the runtime reads from the file
        kept = {p.key: p.value for p in model.metadata_props}
        tmp_out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(tmp_out),
            _FolderReader(files, inputs[0].name, imgsz),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(excluded),
        )
        q = onnx.load(str(tmp_out))
        del q.metadata_props[:]
        for key, value in kept.items():
            q.metadata_props.add(key=key, value=value)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(q, str(out))
    return QuantizeResult(len(files), prefix, excluded, "MinMax", per_channel)
