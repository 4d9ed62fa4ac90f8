"""mAP of a detector ONNX on a labelled image folder, inferred with onnxruntime.

The numbers in the lab manifest must describe the files that ship, not the PyTorch checkpoint they
came from, so the ONNX file itself is run (ultralytics' ONNX backend is onnxruntime on the CPU) and
scored with ultralytics' standard detection metrics (conf 0.001, NMS IoU 0.7, COCO-style AP).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from rvm_edge.toolchain import offline
from rvm_edge.toolchain.yolo_export import describe


class EvaluateError(RuntimeError):
    """The split cannot be scored (no images, no labels beside them)."""


@dataclass(frozen=True)
class Metrics:
    map50: float
    map50_95: float
    precision: float
    recall: float
    images: int


def _labels_dir(images: Path) -> Path:
    """ultralytics' rule: the labels of ``.../images/<split>`` are in ``.../labels/<split>``."""
    parts = list(images.resolve().parts)
    if "images" not in parts:
        raise EvaluateError(
            f"{images}: expected a YOLO layout .../images/<split> with .../labels/<split> beside it"
        )
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts)


def map50(onnx_path: Path, images: Path, imgsz: int) -> Metrics:
    """Score ``onnx_path`` on the images in ``images`` (YOLO labels in the sibling ``labels`` folder)."""
    labels = _labels_dir(images)
    count = len([p for p in images.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"}])
    if count == 0 or not labels.is_dir():
        raise EvaluateError(
            f"{images}: {count} images, labels folder {labels} {'found' if labels.is_dir() else 'missing'}"
        )
    classes = describe(onnx_path).classes
    offline.prepare()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="rvm-eval-") as tmp:
        data = Path(tmp) / "data.yaml"
        names = "".join(f"  {i}: {n}\n" for i, n in enumerate(classes))
        data.write_text(f"path: {images.resolve()}\ntrain: .\nval: .\nnames:\n{names}", encoding="utf-8")
        model = YOLO(str(onnx_path), task="detect")
        result = model.val(
            data=str(data),
            imgsz=imgsz,
            batch=1,
            device="cpu",
            plots=False,
            verbose=False,
            project=tmp,
            name="val",
            workers=0,
        )
    box = result.box
    return Metrics(float(box.map50), float(box.map), float(box.mp), float(box.mr), count)
