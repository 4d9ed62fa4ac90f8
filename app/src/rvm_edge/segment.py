"""SAM2 box-prompted segmentation from two ONNX models: image encoder + mask decoder.

The encoder runs once per frame (the expensive part: seconds on a CPU); the decoder runs once
per accepted box (tens of milliseconds). The result is a PNG mask plus geometry that the
platform uses (area, how much of the box the item fills, orientation).

Inputs are matched by name, following the usual SAM2 ONNX split: the decoder takes the
encoder's outputs under the same names, plus ``point_coords``/``point_labels`` (a box is two
points labelled 2 and 3), ``mask_input``/``has_mask_input`` (no previous mask) and optionally
``orig_im_size``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from rvm_edge.manifest import ManifestError, load_manifest, verify_entry
from rvm_edge.memory import trim_heap
from rvm_edge.messages import MaskGeometry

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def mask_geometry(mask: np.ndarray, box: tuple[float, float, float, float]) -> MaskGeometry:
    """Area, fill ratio of the box, orientation of the major axis (degrees, [0, 180)) and centroid."""
    m = mask.astype(np.uint8, copy=False)
    moments = cv2.moments(m, binaryImage=True)
    area = round(moments["m00"])
    x1, y1, x2, y2 = box
    box_area = max(1.0, (x2 - x1) * (y2 - y1))
    if area == 0:
        return MaskGeometry(0, 0.0, 0.0, ((x1 + x2) / 2, (y1 + y2) / 2))
    cx, cy = moments["m10"] / area, moments["m01"] / area
    theta = 0.5 * math.atan2(2 * moments["mu11"], moments["mu20"] - moments["mu02"])
    return MaskGeometry(area, min(1.0, area / box_area), math.degrees(theta) % 180.0, (cx, cy))


class _OpenVinoEncoder:
    """The SAM2 image encoder compiled by OpenVINO: on x86 CPUs with AMX, bf16 runs it about 2.5x
    faster than ONNX Runtime FP32. Compiling takes minutes, so the compiled model is cached on disk."""

    def __init__(self, path: Path, precision: str, cache_dir: Path | None, threads: int) -> None:
        from rvm_edge.backends.openvino import compile_model

        self.compiled = compile_model(path, "CPU", precision, cache_dir, threads)
        self.request = self.compiled.create_infer_request()
        self.names = [o.get_any_name() for o in self.compiled.outputs]

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: tensor}, share_inputs=True)
        return [self.request.get_output_tensor(i).data for i in range(len(self.names))]


class Sam2Segmenter:
    """Encoder + decoder sessions, loaded once; ``encode`` per frame, ``decode`` per box."""

    def __init__(
        self,
        encoder_path: Path,
        decoder_path: Path,
        threads: int = 0,
        normalize: bool = True,
        encoder_backend: str = "onnxruntime",
        precision: str = "f32",
        cache_dir: Path | None = None,
        allow_spinning: bool = False,
    ) -> None:
        from rvm_edge.backends.ort import session_options

        opts = session_options(threads, allow_spinning)  # no busy-wait between items (see backends.ort)
        # no arena: the encoder's activations (~700 MB at 1024 px) go back to the heap after each
        # frame and trim_heap() returns them to the OS, so resident memory stays flat between items
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        providers = ["CPUExecutionProvider"]
        self.decoder = ort.InferenceSession(str(decoder_path), opts, providers=providers)
        self._ov: _OpenVinoEncoder | None = None
        if encoder_backend == "openvino":
            self._ov = _OpenVinoEncoder(encoder_path, precision, cache_dir, threads)
            dims = self._ov.compiled.input(0).get_partial_shape()
            shape = [d.get_length() if d.is_static else "?" for d in dims]
            self.enc_input = self._ov.compiled.input(0).get_any_name()
            self.enc_outputs = self._ov.names
        elif encoder_backend == "onnxruntime":
            self.encoder = ort.InferenceSession(str(encoder_path), opts, providers=providers)
            enc_in = self.encoder.get_inputs()[0]
            shape = list(enc_in.shape)
            self.enc_input = enc_in.name
            self.enc_outputs = [o.name for o in self.encoder.get_outputs()]
        else:
            raise ValueError(f"SAM2 encoder backend {encoder_backend!r}: expected onnxruntime or openvino")
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ValueError(f"{encoder_path}: expected a fixed-size NCHW image input, got {shape}")
        self.size = (int(shape[2]), int(shape[3]))
        self.dec_inputs = {i.name: i for i in self.decoder.get_inputs()}
        missing = [n for n in self.dec_inputs if not self._known_input(n)]
        if missing:
            raise ValueError(
                f"{decoder_path}: decoder inputs {missing} are neither encoder outputs nor prompts"
            )
        outs = self.decoder.get_outputs()
        self.mask_output = next(o.name for o in outs if len(o.shape) == 4)
        self.score_output = next((o.name for o in outs if len(o.shape) == 2), None)
        self.normalize = normalize
        self._tensor = np.empty((1, 3, *self.size), np.float32)  # reused for every frame
        self._resized = np.empty((*self.size, 3), np.uint8)
        self._mask_input = np.zeros((1, 1, self.size[0] // 4, self.size[1] // 4), np.float32)

    def _known_input(self, name: str) -> bool:
        return name in self.enc_outputs or any(
            k in name for k in ("coord", "label", "mask_input", "has_mask", "orig_im_size")
        )

    def encode(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Image embedding of a BGR frame (SAM2 resizes to its square input without letterbox)."""
        cv2.resize(image, (self.size[1], self.size[0]), dst=self._resized, interpolation=cv2.INTER_LINEAR)
        rgb = self._resized[:, :, ::-1].astype(np.float32)
        if self.normalize:
            rgb = (rgb - IMAGENET_MEAN) / IMAGENET_STD
        else:
            rgb /= 255.0
        self._tensor[0] = rgb.transpose(2, 0, 1)
        if self._ov is not None:
            values = self._ov.run(self._tensor)
        else:
            values = self.encoder.run(None, {self.enc_input: self._tensor})
        trim_heap()
        return dict(zip(self.enc_outputs, values, strict=True))

    def decode(
        self,
        embedding: dict[str, np.ndarray],
        box: tuple[float, float, float, float],
        image_hw: tuple[int, int],
    ) -> tuple[np.ndarray, float]:
        """Boolean mask at the original image size for one box prompt, and the decoder's score."""
        h, w = image_hw
        sy, sx = self.size[0] / h, self.size[1] / w
        x1, y1, x2, y2 = box
        feeds: dict[str, np.ndarray] = {}
        for name, meta in self.dec_inputs.items():
            if name in embedding:
                feeds[name] = embedding[name]
            elif "coord" in name:
                feeds[name] = np.array([[[x1 * sx, y1 * sy], [x2 * sx, y2 * sy]]], np.float32)
            elif "label" in name:
                feeds[name] = np.array([[2, 3]], np.float32)
            elif "has_mask" in name:  # before "mask_input": "has_mask_input" contains it
                feeds[name] = np.zeros([d if isinstance(d, int) else 1 for d in meta.shape], np.float32)
            elif "mask_input" in name:
                feeds[name] = self._mask_input
            elif "orig_im_size" in name:
                dtype = np.int64 if "int64" in meta.type else np.int32 if "int32" in meta.type else np.float32
                feeds[name] = np.array([h, w], dtype)
        wanted = [self.mask_output] + ([self.score_output] if self.score_output else [])
        outs = self.decoder.run(wanted, feeds)
        masks = outs[0][0]  # (M, mh, mw) logits
        scores = outs[1][0] if len(outs) > 1 else np.zeros(masks.shape[0], np.float32)
        best = int(np.argmax(scores))
        logits = masks[best]
        if logits.shape != (h, w):
            logits = cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR)
        return logits > 0.0, float(scores[best])

    def warm_up(self) -> None:
        """One encode + decode on a blank frame: the first real item must not pay for lazy init."""
        h, w = self.size
        blank = np.full((h, w, 3), 114, np.uint8)
        self.decode(self.encode(blank), (w / 4, h / 4, 3 * w / 4, 3 * h / 4), (h, w))

    def segment(
        self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]
    ) -> tuple[list[tuple[np.ndarray, float]], dict[str, float]]:
        """Encode once, decode each box; returns masks with scores and the timings."""
        t0 = time.perf_counter()
        emb = self.encode(image)
        t1 = time.perf_counter()
        results = [self.decode(emb, box, image.shape[:2]) for box in boxes]
        t2 = time.perf_counter()
        return results, {"sam2_encode_ms": (t1 - t0) * 1e3, "sam2_decode_ms": (t2 - t1) * 1e3}


def write_mask_png(mask: np.ndarray, path: Path) -> Path:
    """A single-channel PNG, 255 inside the item; written beside its siblings atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255):
        raise OSError(f"{path}: cannot write mask PNG")
    tmp.replace(path)
    return path


def load_segmenter(
    manifest_path: str | Path,
    threads: int = 0,
    encoder_backend: str = "onnxruntime",
    precision: str = "f32",
    cache_dir: Path | None = None,
    allow_spinning: bool = False,
) -> Sam2Segmenter:
    """The SAM2 encoder and decoder of a manifest, verified (sha256, input shape) first."""
    manifest = load_manifest(manifest_path)
    enc, dec = manifest.by_role("sam2_encoder"), manifest.by_role("sam2_decoder")
    problems = verify_entry(manifest, enc, check_graph=False) + verify_entry(manifest, dec, check_graph=False)
    if problems:
        raise ManifestError("; ".join(problems))
    seg = Sam2Segmenter(
        manifest.file_path(enc),
        manifest.file_path(dec),
        threads,
        normalize=not enc.source.get("normalized_in_graph", False),
        encoder_backend=encoder_backend,
        precision=precision,
        cache_dir=cache_dir,
        allow_spinning=allow_spinning,
    )
    if tuple(enc.input_shape[2:]) != seg.size:
        raise ManifestError(
            f"{manifest.file_path(enc)}: encoder input {list(seg.size)} disagrees with the manifest's "
            f"input_shape {list(enc.input_shape)}"
        )
    return seg
