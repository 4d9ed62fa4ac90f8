"""The model_engine worker: runs inside the release's virtualenv, where the inference libraries are.

Why a separate process: the Ansible module runs on the device's system Python, which has neither
ONNX Runtime nor OpenVINO (they live in each release's venv, pinned by its bundle). The module reads
this file's source and runs it as ``<venv python> -c <source> <command> ...``; it prints one JSON
object on stdout. Commands:

- ``version BACKEND``: the library version, read from the installed distribution (nothing imported).
- ``shape ONNX``: the input shape of the model's first input, read by ONNX Runtime.
- ``build onnxruntime ONNX OUT``: ONNX Runtime's optimized model (ORT_ENABLE_ALL) written to OUT.
- ``build openvino ONNX OUT HINT``: the OpenVINO CPU compiled model exported to OUT, and the
  precision it was compiled at.
- ``load BACKEND ENGINE``: load an engine the way rvm-edge will; fails on a corrupt file.
"""

from __future__ import annotations

import io
import json
import sys
from importlib import metadata

_DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt",),
}


def version(backend: str) -> dict[str, str]:
    for dist in _DISTRIBUTIONS[backend]:
        try:
            return {"version": metadata.version(dist)}
        except metadata.PackageNotFoundError:
            continue
    raise SystemExit(f"{backend} is not installed in {sys.prefix}")


def shape(onnx: str) -> dict[str, list[int]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    dims = session.get_inputs()[0].shape
    return {"shape": [d if isinstance(d, int) else -1 for d in dims]}


def build_ort(onnx: str, out: str) -> dict[str, str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = out
    ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    return {"engine": out}


def build_openvino(onnx: str, out: str, hint: str) -> dict[str, str]:
    """The compiled model's blob, and the precision OpenVINO really took: it keeps its default
    without a word when the CPU cannot do the hint, so the caller compares the two."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(onnx), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    blob = io.BytesIO()  # this API takes a BytesIO, not a file object
    compiled.export_model(blob)
    with open(out, "wb") as f:
        f.write(blob.getvalue())
    return {"engine": out, "precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string()}


def load(backend: str, engine: str) -> dict[str, list[int]]:
    if backend == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(engine, options, providers=["CPUExecutionProvider"])
        dims = session.get_inputs()[0].shape
    elif backend == "openvino":
        import openvino as ov

        with open(engine, "rb") as f:
            compiled = ov.Core().import_model(io.BytesIO(f.read()), "CPU")
        dims = list(compiled.inputs[0].get_partial_shape().to_shape())
    else:
        raise SystemExit(f"load: backend {backend} is checked by its builder, not here")
    return {"shape": [int(d) if isinstance(d, int) or str(d).isdigit() else -1 for d in dims]}


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "version":
        out: object = version(args[0])
    elif command == "shape":
        out = shape(args[0])
    elif command == "build" and args[0] == "onnxruntime":
        out = build_ort(args[1], args[2])
    elif command == "build" and args[0] == "openvino":
        out = build_openvino(args[1], args[2], args[3])
    elif command == "load":
        out = load(args[0], args[1])
    else:
        raise SystemExit(f"unknown worker command: {' '.join(argv)}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
