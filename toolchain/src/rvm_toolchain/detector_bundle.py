"""One detector checkpoint -> the ONNX files a device runs (FP32, optionally INT8) + manifest entries.

Shared by ``rvm-toolchain export`` and the lab recipe so that both produce the same layout and
record the same facts: where the file came from, its settings and, when a labelled split is given,
the mAP the *ONNX file* reaches on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvm_edge.manifest import ModelEntry, sha256_file
from rvm_toolchain.yolo_export import DEFAULT_OPSET, DetectorInfo, export_detector


@dataclass(frozen=True)
class DetectorExport:
    """What to export and how; ``calib`` switches INT8 on, ``val_images`` switches metrics on."""

    checkpoint: Path
    out_dir: Path
    name: str
    version: str
    imgsz: int = 320
    opset: int = DEFAULT_OPSET
    calib: Path | None = None
    val_images: Path | None = None


def _metrics(path: Path, spec: DetectorExport) -> dict[str, Any]:
    from rvm_toolchain.evaluate import map50

    m = map50(path, spec.val_images, spec.imgsz) if spec.val_images else None
    if m is None:
        return {}
    return {
        "metrics": {
            "map50_val": round(m.map50, 4),
            "map50_95_val": round(m.map50_95, 4),
            "precision_val": round(m.precision, 4),
            "recall_val": round(m.recall, 4),
            "val_images": m.images,
            "measured_with": "onnxruntime CPU on this ONNX file, ultralytics detection metrics",
        }
    }


def _entry(
    spec: DetectorExport, path: Path, info: DetectorInfo, precision: str, source: dict[str, Any]
) -> ModelEntry:
    return ModelEntry(
        name=spec.name + ("-int8" if precision == "int8" else ""),
        role="detector",
        version=spec.version,
        file=path.name,
        sha256=sha256_file(path),
        format="onnx",
        precision=precision,
        input_shape=tuple(int(d) for d in info.input_shape),
        classes=info.classes,
        source=source,
    )


def export_bundle(spec: DetectorExport, extra_source: dict[str, Any] | None = None) -> tuple[ModelEntry, ...]:
    """Export, optionally quantise and score; returns the manifest entries (the caller writes them)."""
    import ultralytics

    spec.out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = spec.out_dir / f"{spec.name}.onnx"
    info = export_detector(spec.checkpoint, fp32, imgsz=spec.imgsz, opset=spec.opset)
    base: dict[str, Any] = {
        "made_by": "rvm-toolchain export (rvm_toolchain)",
        "checkpoint": spec.checkpoint.name,
        "checkpoint_sha256": sha256_file(spec.checkpoint),
        "ultralytics": ultralytics.__version__,
        "opset": info.opset,
        "output0": list(info.output_shape),
        **(extra_source or {}),
    }
    entries = [_entry(spec, fp32, info, "fp32", {**base, **_metrics(fp32, spec)})]
    if spec.calib is not None:
        from rvm_toolchain.quantize import quantize_detector

        int8 = spec.out_dir / f"{spec.name}-int8.onnx"
        q = quantize_detector(fp32, int8, spec.calib)
        source = {**base, "quantization": q.to_json(), **_metrics(int8, spec)}
        entries.append(_entry(spec, int8, info, "int8", source))
    return tuple(entries)
