"""ultralytics as a reference backend (development and benchmarks only: it needs torch).

Runs the same model file through ultralytics' AutoBackend, so the raw output can be compared
with the project's own backends; ultralytics' full pipeline is timed by the toolchain (``rvm-toolchain compare-ultralytics``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rvm_edge.backends.base import Backend, BackendError


class UltralyticsBackend(Backend):
    name = "ultralytics"

    def __init__(self, model_path: Path, input_size: tuple[int, int] | None = None, **_: object) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:
            import torch
            from ultralytics.nn.autobackend import AutoBackend
        except ImportError as exc:
            raise BackendError(
                f"the ultralytics backend needs torch + ultralytics (the toolchain venv, `make -C toolchain venv`): {exc}"
            ) from exc
        self._torch = torch
        self.model = AutoBackend(str(model_path), device=torch.device("cpu"), fp16=False)
        meta = getattr(self.model, "metadata", None) or {}
        h, w = input_size or tuple(meta.get("imgsz", (640, 640)))
        self.input_shape = (1, 3, int(h), int(w))

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            out = self.model(self._torch.from_numpy(np.ascontiguousarray(tensor)))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.cpu().numpy() if hasattr(out, "cpu") else np.asarray(out)
