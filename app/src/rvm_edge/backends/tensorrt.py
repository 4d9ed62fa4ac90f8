"""A serialized TensorRT engine on a Jetson (TensorRT 10 Python API + cuda-python).

This cannot run without an NVIDIA GPU, so the hardware layer (:class:`TrtRunner`) is kept to
the few calls TensorRT needs; everything around it (file checks, shape and dtype checks, host
buffers) lives in :class:`TensorRTBackend` and is tested with a runner double that follows the
same contract. Engines are built on the device by Ansible's ``model_engine`` module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rvm_edge.backends.base import Backend, BackendError


class Runner(Protocol):
    """What the backend needs from an engine: named I/O with shapes and dtypes, and a blocking run."""

    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: np.dtype
    output_dtype: np.dtype

    def run(self, host_input: np.ndarray, host_output: np.ndarray) -> None: ...

    def close(self) -> None: ...


class TrtRunner:
    """The thin hardware layer: deserialize, allocate device buffers once, copy in, execute, copy out."""

    def __init__(self, engine_path: Path) -> None:
        import tensorrt as trt

        try:  # cuda-python >= 12.6 moved the runtime bindings; older JetPack wheels have the old name
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart

        self._trt, self._cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(
                f"{engine_path}: TensorRT cannot deserialize it (built for another TensorRT/GPU?)"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(f"{engine_path}: expected one input and one output, got {inputs} / {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.output_shape = tuple(self.engine.get_tensor_shape(self.output_name))
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self._stream = self._check(cudart.cudaStreamCreate())
        in_bytes = int(np.prod(self.input_shape)) * self.input_dtype.itemsize
        out_bytes = int(np.prod(self.output_shape)) * self.output_dtype.itemsize
        self._d_in = self._check(cudart.cudaMalloc(in_bytes))
        self._d_out = self._check(cudart.cudaMalloc(out_bytes))
        self.context.set_tensor_address(self.input_name, int(self._d_in))
        self.context.set_tensor_address(self.output_name, int(self._d_out))

    def _check(self, result: tuple[Any, ...]) -> Any:
        err, *rest = result
        if int(err) != 0:
            raise BackendError(f"CUDA call failed: {err}")
        return rest[0] if rest else None

    def run(self, host_input: np.ndarray, host_output: np.ndarray) -> None:
        cu = self._cudart
        h2d, d2h = cu.cudaMemcpyKind.cudaMemcpyHostToDevice, cu.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            cu.cudaMemcpyAsync(self._d_in, host_input.ctypes.data, host_input.nbytes, h2d, self._stream)
        )
        if not self.context.execute_async_v3(int(self._stream)):  # TensorRT takes the raw handle
            raise BackendError("TensorRT execute_async_v3 failed")
        self._check(
            cu.cudaMemcpyAsync(host_output.ctypes.data, self._d_out, host_output.nbytes, d2h, self._stream)
        )
        self._check(cu.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        for ptr in (self._d_in, self._d_out):
            self._cudart.cudaFree(ptr)
        self._cudart.cudaStreamDestroy(self._stream)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model_path: Path, runner: Runner | None = None, **_: object) -> None:
        if model_path.suffix not in (".engine", ".plan"):
            raise BackendError(
                f"{model_path}: the tensorrt backend runs a serialized engine (.engine/.plan), not "
                f"{model_path.suffix or 'a file without suffix'}; build one on the device with the "
                "model_engines role (ansible-playbook playbooks/deploy.yml --tags model_engines)"
            )
        if runner is None and not model_path.is_file():
            raise BackendError(
                f"{model_path}: engine missing; build it on the device with the model_engines role"
            )
        self.runner: Runner = runner if runner is not None else TrtRunner(model_path)
        shape = self.runner.input_shape
        if len(shape) != 4 or any(d <= 0 for d in shape):
            raise BackendError(f"{model_path}: expected a static NCHW input, engine has {shape}")
        self.input_shape = (int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3]))
        self.max_batch = self.input_shape[0]
        self.input_dtype = self.runner.input_dtype.type
        # host buffers allocated once: the engine's shapes never change
        self._host_in = np.zeros(self.input_shape, self.runner.input_dtype)
        self._host_out = np.zeros(self.runner.output_shape, self.runner.output_dtype)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        n = tensor.shape[0]
        if n > self.max_batch or tensor.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"tensor {tensor.shape} does not fit the engine input {self.input_shape}")
        self._host_in[:n] = tensor  # casts to the engine's dtype (FP16 engines take half input)
        self.runner.run(self._host_in, self._host_out)
        out = self._host_out[:n]
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def close(self) -> None:
        self.runner.close()
