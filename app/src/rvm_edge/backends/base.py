"""The backend interface and the registry that picks one by name.

A backend only runs the network: tensor in, raw output out. Letterbox, decode and NMS live in
the project's own code so every backend gives the same detections. Backends are imported lazily,
so a device without OpenVINO or TensorRT never imports them.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np


class BackendError(RuntimeError):
    """A backend that cannot be created here; the message says what is missing and what to do."""


class Backend(ABC):
    """Runs one model. ``input_shape`` is NCHW; ``max_batch`` > 1 when the model takes batches."""

    name: str = "?"
    input_shape: tuple[int, int, int, int]
    max_batch: int = 1
    input_dtype: type = np.float32

    @abstractmethod
    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw network output for a batch; may be a reused buffer, valid until the next call."""

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold nothing to release)
        """Release what the backend holds (sessions, device memory)."""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "input_shape": list(self.input_shape), "max_batch": self.max_batch}


# name -> (module, class, what it needs): imported only when chosen
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("rvm_edge.backends.ort", "OrtBackend", "onnxruntime (runtime dependency)"),
    "openvino": ("rvm_edge.backends.openvino", "OpenVinoBackend", "pip install 'rvm-edge[openvino]'"),
    "tensorrt": (
        "rvm_edge.backends.tensorrt",
        "TensorRTBackend",
        "JetPack's python3-libnvinfer and cuda-python",
    ),
    "ultralytics": (
        "rvm_edge.backends.reference",
        "UltralyticsBackend",
        "the toolchain venv: make -C toolchain venv",
    ),
}


def backend_names() -> list[str]:
    return list(_REGISTRY)


def _probe(module: str) -> bool:
    probes = {
        "rvm_edge.backends.ort": "onnxruntime",
        "rvm_edge.backends.openvino": "openvino",
        "rvm_edge.backends.tensorrt": "tensorrt",
        "rvm_edge.backends.reference": "ultralytics",
    }
    return importlib.util.find_spec(probes[module]) is not None


def available_backends() -> dict[str, bool]:
    """Every known backend and whether its library is installed here (cheap: nothing is imported)."""
    return {name: _probe(mod) for name, (mod, _, _) in _REGISTRY.items()}


def _backend_class(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        avail = available_backends()
        listing = ", ".join(f"{n}{'' if ok else ' (not installed)'}" for n, ok in avail.items())
        raise BackendError(f"unknown backend {name!r}; available backends: {listing}")
    module, cls, needs = _REGISTRY[name]
    if not _probe(module):
        raise BackendError(f"backend {name!r} is not installed on this host: {needs}")
    return getattr(importlib.import_module(module), cls)


def create_backend(name: str, model_path: str | Path, **options: Any) -> Backend:
    """Instantiate backend ``name`` for ``model_path``; unknown names list the available ones."""
    return _backend_class(name)(Path(model_path), **options)
