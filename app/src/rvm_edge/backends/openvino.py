"""OpenVINO on the CPU (x86 devices and the lab), with its compiled-model cache kept on disk.

Compiling a large model (the SAM2 encoder) takes minutes; with ``CACHE_DIR`` the next start
takes under a second, so the cache directory must survive restarts (it lives under the state dir).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from rvm_edge.backends.base import Backend, BackendError


def compile_model(
    model_path: Path,
    device: str = "CPU",
    precision: str = "f32",
    cache_dir: Path | None = None,
    threads: int = 0,
    input_size: tuple[int, int] | None = None,
    batch: int = 1,
) -> ov.CompiledModel:
    """Compile with an explicit precision: OpenVINO silently runs bf16 on AMX CPUs unless told."""
    core = ov.Core()
    model: ov.Model | str = str(model_path)
    read = core.read_model(str(model_path))
    shape = read.input(0).get_partial_shape()
    if shape.rank.get_length() == 4:
        dims = list(shape)
        if input_size is not None and not (dims[2].is_static and dims[3].is_static):
            dims[2], dims[3] = ov.Dimension(input_size[0]), ov.Dimension(input_size[1])  # faster kernels
        if dims[0].is_dynamic:  # bounded when batches are wanted, else one frame a call
            dims[0] = ov.Dimension(1, batch) if batch > 1 else ov.Dimension(1)
        if ov.PartialShape(dims) != shape:
            read.reshape({0: ov.PartialShape(dims)})
            model = read
    config: dict[str, str] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache_dir)
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    try:
        return core.compile_model(model, device, config)
    except Exception as exc:  # OpenVINO raises a bare RuntimeError for every kind of failure
        raise BackendError(f"{model_path}: OpenVINO cannot compile it for {device} ({exc})") from exc


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        model_path: Path,
        device: str = "CPU",
        precision: str = "f32",
        cache_dir: Path | None = None,
        threads: int = 0,
        input_size: tuple[int, int] | None = None,
        batch: int = 1,
        **_: object,
    ) -> None:
        self.compiled = compile_model(model_path, device, precision, cache_dir, threads, input_size, batch)
        shape = self.compiled.input(0).get_partial_shape()
        fixed_chw = all(d.is_static for d in list(shape)[1:])
        if shape.rank.get_length() != 4 or not fixed_chw:
            raise BackendError(f"{model_path}: expected a fixed-size NCHW image input, got {shape}")
        dims = [d.get_length() if d.is_static else 1 for d in shape]
        if shape[0].is_dynamic:
            dims[0] = shape[0].get_max_length() if shape[0].get_max_length() > 0 else 1
        self.max_batch = dims[0]
        self.input_shape = (dims[0], dims[1], dims[2], dims[3])
        self.request = self.compiled.create_infer_request()
        self.precision, self.threads = precision, threads

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        self.request.infer({0: tensor}, share_inputs=True)
        return self.request.get_output_tensor(0).data

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "precision": self.precision, "threads": self.threads or "one per core"}
