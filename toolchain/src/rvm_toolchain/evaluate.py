"""mAP of a detector ONNX on a labelled image folder, inferred with onnxruntime.

The numbers in the lab manifest must describe the files that ship, not the PyTorch checkpoint they
came from, so the ONNX file itself is run (ultralytics' ONNX backend is onnxruntime on the CPU) and
scored with ultralytics' standard detection metrics (conf 0.001, NMS IoU 0.7, COCO-style AP).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvm_toolchain import offline
from rvm_toolchain.yolo_export import describe


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


def evaluate_manifest(manifest_path: Path, seed: int, split: str, count: int, work: Path) -> dict[str, Any]:
    """mAP of every detector in a manifest on ``count`` frames of one synthetic split.

    The frames are rendered again from ``(seed, index)`` into ``work`` (the generator is
    deterministic), so the figure needs no stored data set, only the seed the manifest records.
    """
    from rvm_edge.manifest import load_manifest
    from rvm_toolchain import synth

    manifest = load_manifest(manifest_path)
    images = synth.write_split(work, seed, split, count)
    report: dict[str, Any] = {"manifest": str(manifest_path), "seed": seed, "split": split, "images": count}
    for entry in manifest.models:
        if entry.role != "detector":
            continue
        m = map50(manifest.file_path(entry), images, entry.input_shape[-1])
        report[entry.name] = {
            "precision": entry.precision,
            "map50": round(m.map50, 4),
            "map50_95": round(m.map50_95, 4),
            "box_precision": round(m.precision, 4),
            "recall": round(m.recall, 4),
        }
    return report


def register(subparsers: Any) -> None:
    """Add ``eval`` to the ``rvm-toolchain`` sub-commands."""
    p = subparsers.add_parser(
        "eval",
        help="mAP50 of a manifest's detectors on a synthetic split (default: test, used by no training step)",
    )
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: the manifest's)")
    p.add_argument("--split", default="test", help="synthetic split (default test)")
    p.add_argument("--frames", type=int, default=200, help="frames to render and score (default 200)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from rvm_edge.manifest import load_manifest

    seed = args.seed
    if seed is None:
        seed = int(load_manifest(args.manifest).by_role("detector").source.get("seed", 0))
    with tempfile.TemporaryDirectory(prefix="rvm-eval-split-") as tmp:
        report = evaluate_manifest(args.manifest, seed, args.split, args.frames, Path(tmp))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0
