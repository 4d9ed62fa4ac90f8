"""The detector: letterbox -> backend -> decode/NMS -> boxes in original pixels, with timings.

Backend-agnostic: every backend returns YOLO11's raw output ``(batch, 4 + classes, anchors)``
and this module does the rest, so all backends (and ultralytics) agree on the detections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rvm_edge.backends import Backend, create_backend
from rvm_edge.manifest import Manifest, ManifestError, ModelEntry, load_manifest, verify_entry
from rvm_edge.messages import Detection, Detections
from rvm_edge.postprocess import decode, scale_boxes
from rvm_edge.preprocess import Preprocessor


@dataclass(frozen=True)
class DetectorConfig:
    conf_threshold: float = 0.25
    iou_threshold: float = 0.7
    max_det: int = 300


class Detector:
    """One model on one backend; not thread-safe (one per worker thread: buffers are reused)."""

    def __init__(
        self, backend: Backend, classes: list[str] | tuple[str, ...], config: DetectorConfig | None = None
    ):
        self.backend = backend
        self.classes = tuple(classes)
        self.config = config or DetectorConfig()
        _, _, h, w = backend.input_shape
        self.pre = Preprocessor(h, w, backend.max_batch, backend.input_dtype)

    @property
    def max_batch(self) -> int:
        return self.backend.max_batch

    def warm_up(self, runs: int = 2) -> None:
        """Run the model on a blank frame so the first real frame does not pay for lazy initialisation."""
        _, _, h, w = self.backend.input_shape
        blank = np.full((h, w, 3), 114, np.uint8)
        for _ in range(runs):
            self.detect_batch([blank] * self.max_batch)

    def detect(self, image: np.ndarray, frame_index: int = 0) -> Detections:
        return self.detect_batch([image], [frame_index])[0]

    def detect_batch(
        self, images: list[np.ndarray], frame_indices: list[int] | None = None
    ) -> list[Detections]:
        t0 = time.perf_counter()
        tensor, geoms = self.pre(images)
        t1 = time.perf_counter()
        raw = self.backend.infer(tensor)
        t2 = time.perf_counter()
        if raw.ndim != 3 or raw.shape[1] != 4 + len(self.classes):
            raise ValueError(
                f"model output {raw.shape} does not fit {len(self.classes)} classes "
                "(expected (batch, 4 + classes, anchors)): model and manifest disagree"
            )
        results = []
        for i, g in enumerate(geoms):
            rows = decode(raw[i], self.config.conf_threshold, self.config.iou_threshold, self.config.max_det)
            rows = scale_boxes(rows.astype(np.float64), g)
            items = tuple(
                Detection(
                    int(c), self.classes[int(c)], float(conf), (float(x1), float(y1), float(x2), float(y2))
                )
                for x1, y1, x2, y2, conf, c in rows
            )
            idx = frame_indices[i] if frame_indices else i
            results.append(Detections(idx, (g.orig_h, g.orig_w), items))
        t3 = time.perf_counter()
        n = len(images)
        timings = {
            "preprocess_ms": (t1 - t0) * 1e3 / n,
            "model_ms": (t2 - t1) * 1e3 / n,
            "postprocess_ms": (t3 - t2) * 1e3 / n,
        }
        return [Detections(d.frame_index, d.image_size, d.items, dict(timings)) for d in results]

    def close(self) -> None:
        self.backend.close()


def check_model_against_manifest(backend: Backend, entry: ModelEntry, model_path: Path) -> None:
    """Refuse at start a model whose input size or class names disagree with the manifest."""
    want = tuple(entry.input_shape)
    got = tuple(backend.input_shape)
    if want[1:] != got[1:]:
        raise ManifestError(
            f"{model_path}: model input {list(got)} disagrees with the manifest's input_shape {list(want)}"
        )
    from rvm_edge.manifest import onnx_class_names

    names = onnx_class_names(getattr(backend, "metadata", {}) or {})
    if names is not None and names != list(entry.classes):
        raise ManifestError(
            f"{model_path}: class names in the model {names} disagree with the manifest's classes "
            f"{list(entry.classes)}"
        )


def load_detector(
    manifest_path: str | Path,
    backend: str = "onnxruntime",
    model_name: str | None = None,
    config: DetectorConfig | None = None,
    engine_path: str | Path | None = None,
    **backend_options: object,
) -> Detector:
    """The detector described by a manifest, verified (sha256, shape, classes) before it runs.

    ``engine_path`` points a compiled backend (TensorRT engine) at its device-built file; the
    manifest's ONNX is still verified because the engine was built from it.
    """
    manifest: Manifest = load_manifest(manifest_path)
    entry = manifest.by_name(model_name) if model_name else manifest.by_role("detector")
    problems = verify_entry(manifest, entry, check_graph=False)
    if problems:
        raise ManifestError("; ".join(problems))
    model_path = Path(engine_path) if engine_path else manifest.file_path(entry)
    options = {"input_size": tuple(entry.input_shape[2:]), **backend_options}
    be = create_backend(backend, model_path, **options)
    try:
        check_model_against_manifest(be, entry, model_path)
    except ManifestError:
        be.close()
        raise
    return Detector(be, entry.classes, config)
