"""ultralytics ``.pt`` -> ONNX in the standard ultralytics layout, checked before it is handed on.

The device's own pre/post-processing is written against what ultralytics' exporter produces: input
``images`` [1, 3, S, S] (RGB, 0..1, letterboxed), output ``output0`` [1, 4 + nc, N] (cx, cy, w, h in
input pixels, then one sigmoid score per class; no NMS inside) and the class names in the ONNX
metadata (``names``, a Python dict literal). Exporting through ultralytics keeps exactly that; this
module only pins the settings (static shape, opset 17: onnxruntime, OpenVINO and TensorRT 8.6 all
read it) and refuses a file that does not have that layout.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rvm_toolchain import offline

DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """The checkpoint could not be exported, or the result is not a standard detector ONNX."""


@dataclass(frozen=True)
class DetectorInfo:
    """What the runtime needs to know about a detector ONNX, read back from the file itself."""

    input_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    classes: tuple[str, ...]
    imgsz: int
    opset: int


def describe(onnx_path: Path) -> DetectorInfo:
    """Read and check the layout of a detector ONNX; raises ExportError naming what is wrong."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for bad files
        raise ExportError(f"{onnx_path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if "names" not in meta:
        raise ExportError(
            f"{onnx_path}: no 'names' metadata; export it with `rvm-toolchain export` (ultralytics)"
        )
    names = ast.literal_eval(meta["names"])
    classes = (
        tuple(str(names[k]) for k in sorted(names)) if isinstance(names, dict) else tuple(map(str, names))
    )

    def dims(value: object) -> tuple[int, ...]:
        shape = value.type.tensor_type.shape  # type: ignore[attr-defined]
        return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim)

    inputs = [i for i in model.graph.input if i.name not in {init.name for init in model.graph.initializer}]
    if len(inputs) != 1 or len(dims(inputs[0])) != 4:
        raise ExportError(
            f"{onnx_path}: expected one image input [1, 3, S, S], got {[i.name for i in inputs]}"
        )
    outputs = list(model.graph.output)
    if not outputs or outputs[0].name != "output0":
        raise ExportError(
            f"{onnx_path}: expected the ultralytics output 'output0', got {[o.name for o in outputs]}"
        )
    out_shape = dims(outputs[0])
    if len(out_shape) != 3 or out_shape[1] != 4 + len(classes):
        raise ExportError(
            f"{onnx_path}: output0 shape {list(out_shape)} is not [1, 4 + {len(classes)} classes, N] "
            "(an export with NMS inside or a non-detect task?)"
        )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    in_shape = dims(inputs[0])
    return DetectorInfo(inputs[0].name, in_shape, out_shape, classes, int(in_shape[-1]), opset)


def export_detector(
    checkpoint: Path, out: Path, imgsz: int = 320, opset: int = DEFAULT_OPSET
) -> DetectorInfo:
    """Export ``checkpoint`` (a YOLO detect ``.pt``) to ``out``; returns the checked layout."""
    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: checkpoint not found (expected an ultralytics YOLO .pt file)")
    offline.prepare()
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory(prefix="rvm-export-") as tmp:
        # ultralytics writes the ONNX next to the .pt: work on a copy, never beside the operator's file
        pt = Path(tmp) / "model.pt"
        shutil.copyfile(checkpoint, pt)
        try:
            model = YOLO(str(pt))
        except Exception as exc:  # ultralytics raises many types for a bad checkpoint
            raise ExportError(
                f"{checkpoint}: not an ultralytics checkpoint ({type(exc).__name__}: {exc})"
            ) from None
        if model.task != "detect":
            raise ExportError(
                f"{checkpoint}: a {model.task!r} model; the detector must be a YOLO detect model"
            )
        produced = model.export(
            format="onnx",
            imgsz=imgsz,
            opset=opset,
            simplify=True,
            dynamic=False,
            nms=False,
            device="cpu",
            verbose=False,
        )
        if not produced or not Path(produced).is_file():
            raise ExportError(f"{checkpoint}: ultralytics export produced no ONNX file")
        info = describe(Path(produced))
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), out)
    return info
