"""mAP of a detector ONNX on a labelled image folder, inferred with onnxruntime or the device's OpenVINO.

The numbers in the lab manifest must describe the files that ship, not the PyTorch checkpoint they
came from, so the ONNX file itself is run (ultralytics' ONNX backend is onnxruntime on the CPU) and
scored with ultralytics' standard detection metrics (conf 0.001, NMS IoU 0.7, COCO-style AP).

``--backend openvino --precision bf16`` answers a different question: does a device that runs the
same file through OpenVINO at a lower inference precision still detect as well (issue 17)? Only the
inference changes: ultralytics still letterboxes, runs NMS and scores, and the inference is rvm-edge's
own OpenVINO compile (the device's code, its precision hint), so the two figures differ by the
precision alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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
    inference: str = "onnxruntime"  # what ran the model (OpenVINO: with the precision it really took)


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


@contextmanager
def _openvino_inference(precision: str) -> Iterator[list[str]]:
    """While open, ultralytics runs every ONNX model through rvm-edge's OpenVINO compile at ``precision``.

    Why a swap of ultralytics' ONNX backend and not its OpenVINO format: that backend compiles with
    OpenVINO's default precision, which is bf16 on a CPU with bf16 instructions and f32 elsewhere, so
    it could not measure f32 against bf16 on one machine. The list it yields receives the precision
    each compile really took (OpenVINO keeps f32 where the CPU cannot do the hint)."""
    from ultralytics.nn.autobackend import AutoBackend
    from ultralytics.nn.backends.onnx import ONNXBackend

    from rvm_edge.backends.openvino import compile_model

    took: list[str] = []

    class _OpenVino(ONNXBackend):  # type: ignore[misc]  # ultralytics has no type information
        def load_model(self, weight: str | Path) -> None:
            super().load_model(weight)  # metadata, names, shapes; ONNX Runtime's session is not run
            self.compiled = compile_model(Path(weight), precision=precision)
            took.append(self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string())

        def forward(self, im: Any) -> list[Any]:
            return list(self.compiled(im.cpu().numpy()).values())

    saved = AutoBackend._BACKEND_MAP["onnx"]
    AutoBackend._BACKEND_MAP["onnx"] = _OpenVino
    try:
        yield took
    finally:
        AutoBackend._BACKEND_MAP["onnx"] = saved


def map50(
    onnx_path: Path, images: Path, imgsz: int, backend: str = "onnxruntime", precision: str = "f32"
) -> Metrics:
    """Score ``onnx_path`` on the images in ``images`` (YOLO labels in the sibling ``labels`` folder),
    inferred by ONNX Runtime or, with ``backend="openvino"``, by OpenVINO at ``precision``."""
    if backend not in ("onnxruntime", "openvino"):
        raise EvaluateError(f"backend {backend!r}: the evaluator runs onnxruntime or openvino")
    if backend == "onnxruntime" and precision != "f32":
        raise EvaluateError(f"precision {precision!r}: ONNX Runtime runs the file as it is (f32 only)")
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
        with _openvino_inference(precision) if backend == "openvino" else _nothing() as took:
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
    inference = f"openvino {','.join(sorted(set(took)))}" if backend == "openvino" else "onnxruntime"
    return Metrics(float(box.map50), float(box.map), float(box.mp), float(box.mr), count, inference)


@contextmanager
def _nothing() -> Iterator[list[str]]:
    yield []


def evaluate_manifest(
    manifest_path: Path,
    seed: int,
    split: str,
    count: int,
    work: Path,
    backend: str = "onnxruntime",
    precision: str = "f32",
) -> dict[str, Any]:
    """mAP of every detector in a manifest on ``count`` frames of one synthetic split.

    The frames are rendered again from ``(seed, index)`` into ``work`` (the generator is
    deterministic), so the figure needs no stored data set, only the seed the manifest records.
    """
    from rvm_edge.manifest import load_manifest
    from rvm_toolchain import synth

    manifest = load_manifest(manifest_path)
    images = synth.write_split(work, seed, split, count)
    report: dict[str, Any] = {
        "manifest": str(manifest_path),
        "seed": seed,
        "split": split,
        "images": count,
        "backend": backend,
        "precision": precision,
    }
    for entry in manifest.models:
        if entry.role != "detector":
            continue
        m = map50(manifest.file_path(entry), images, entry.input_shape[-1], backend, precision)
        report[entry.name] = {
            "precision": entry.precision,
            "inference": m.inference,
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
    p.add_argument(
        "--backend",
        choices=("onnxruntime", "openvino"),
        default="onnxruntime",
        help="what runs the model (default onnxruntime, the manifest's figures); openvino needs the "
        "openvino package in this venv",
    )
    p.add_argument(
        "--precision",
        choices=("f32", "bf16", "f16", "auto"),
        default="f32",
        help="OpenVINO inference precision hint (default f32; auto: the device's default, bf16 on a CPU "
        "with bf16 instructions, else f32); the report says what OpenVINO really ran",
    )
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from rvm_edge.manifest import load_manifest

    seed = args.seed
    if seed is None:
        seed = int(load_manifest(args.manifest).by_role("detector").source.get("seed", 0))
    with tempfile.TemporaryDirectory(prefix="rvm-eval-split-") as tmp:
        report = evaluate_manifest(
            args.manifest, seed, args.split, args.frames, Path(tmp), args.backend, args.precision
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0
