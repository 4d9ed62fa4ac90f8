"""ONNX Runtime: CPU everywhere, CUDA and TensorRT execution providers where the build has them.

Input and output are bound to preallocated numpy buffers (IO binding), so a frame costs no
allocation on the CPU path.

Spinning: ONNX Runtime's intra-op threads busy-wait between runs by default. At a camera's rate
(a frame every 0.2-1 s) that is pure waste: measured here, the lab detector at 2 fps used 10.4 %
of a core with spinning and 3.4 % without, for the same work. So spinning is off unless asked
for (``allow_spinning=True``: benchmarks and high frame rates, where it saves a few ms a run).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rvm_edge.backends.base import Backend, BackendError

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort

_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def session_options(threads: int = 0, allow_spinning: bool = False) -> ort.SessionOptions:
    """Options every session of the app uses (detector and SAM2): thread count, no spinning."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not allow_spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def pick_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """Requested providers that exist here, else the fastest available; CPU always last as fallback."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise BackendError(
                f"ONNX Runtime providers {missing} are not in this build (available: {available})"
            )
        chosen = list(requested)
    else:
        chosen = [p for p in _PREFERRED if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        providers: list[str] | None = None,
        threads: int = 0,
        batch: int = 1,
        input_size: tuple[int, int] | None = None,
        allow_spinning: bool = False,
        **_: object,
    ) -> None:
        opts = session_options(threads, allow_spinning)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.allow_spinning, self.threads = allow_spinning, threads
        try:
            self.session = ort.InferenceSession(
                str(model_path), opts, providers=pick_providers(ort.get_available_providers(), providers)
            )
        except Exception as exc:  # ORT raises Fail/InvalidGraph/NoSuchFile: all mean "this file is unusable"
            raise BackendError(f"{model_path}: ONNX Runtime cannot load it ({exc})") from exc
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        dims = list(inp.shape)
        if len(dims) == 4 and input_size is not None and not all(isinstance(d, int) for d in dims[2:]):
            dims[2:] = list(input_size)  # a dynamic-size export runs at the size the manifest names
        if len(dims) != 4 or not all(isinstance(d, int) for d in dims[1:]):
            raise BackendError(f"{model_path}: expected a fixed-size NCHW image input, got {dims}")
        dynamic_batch = not isinstance(dims[0], int)
        self.max_batch = batch if dynamic_batch else int(dims[0])
        self.input_shape = (self.max_batch, int(dims[1]), int(dims[2]), int(dims[3]))
        self.input_dtype = _DTYPES.get(inp.type, np.float32)
        self.input_name, self.output_name = inp.name, out.name
        self.providers = self.session.get_providers()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._binding = self.session.io_binding()
        self._out: dict[int, np.ndarray] = {}
        self._out_shape = out.shape

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        n = tensor.shape[0]
        if self.providers[0] != "CPUExecutionProvider":
            return self.session.run([self.output_name], {self.input_name: tensor})[0]
        out = self._out.get(n)
        if out is None:  # learn the output shape once per batch size, then reuse the buffer
            first = self.session.run([self.output_name], {self.input_name: tensor})[0]
            self._out[n] = first.copy()
            return first
        tensor = np.ascontiguousarray(tensor)
        self._binding.bind_cpu_input(self.input_name, tensor)
        self._binding.bind_output(self.output_name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        self.session.run_with_iobinding(self._binding)
        return out

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "providers": self.providers,
            "allow_spinning": self.allow_spinning,
            "threads": self.threads or "one per core",
        }
