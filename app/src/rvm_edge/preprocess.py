"""Letterbox and tensor conversion, written to reuse preallocated buffers.

The arithmetic (scale, rounding of the padding) follows ultralytics' ``LetterBox`` exactly:
a one-pixel difference in padding shifts every box, and the project promises the same
detections as ultralytics for the same model and image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # ultralytics' grey: the model was trained with this padding colour


@dataclass(frozen=True)
class LetterboxGeometry:
    """How an original image maps into the model input: ``model = orig * gain + (pad_x, pad_y)``."""

    gain: float
    pad_x: int
    pad_y: int
    new_w: int
    new_h: int
    orig_h: int
    orig_w: int
    in_h: int
    in_w: int


def letterbox_geometry(orig_h: int, orig_w: int, in_h: int, in_w: int) -> LetterboxGeometry:
    """Scale to fit, centred; rounding as in ultralytics (``round(d - 0.1)`` for the top/left pad)."""
    gain = min(in_h / orig_h, in_w / orig_w)
    new_w, new_h = max(round(orig_w * gain), 1), max(round(orig_h * gain), 1)
    dw, dh = (in_w - new_w) / 2, (in_h - new_h) / 2
    return LetterboxGeometry(gain, round(dw - 0.1), round(dh - 0.1), new_w, new_h, orig_h, orig_w, in_h, in_w)


class Preprocessor:
    """Turns BGR frames into the model's NCHW float32 RGB tensor in [0, 1], without per-frame allocation.

    One instance per detector thread: its buffers are reused on every call, so a caller must
    consume the returned tensor before the next call.
    """

    def __init__(self, in_h: int, in_w: int, batch: int = 1, dtype: type = np.float32) -> None:
        self.in_h, self.in_w, self.batch = in_h, in_w, batch
        self.canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
        self.tensor = np.empty((batch, 3, in_h, in_w), dtype)
        self._resized: dict[tuple[int, int], np.ndarray] = {}

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxGeometry]:
        """The padded BGR canvas (a reused buffer) and the geometry to map boxes back."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected a BGR uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}"
            )
        h, w = image.shape[:2]
        g = letterbox_geometry(h, w, self.in_h, self.in_w)
        self.canvas[...] = PAD_VALUE
        region = self.canvas[g.pad_y : g.pad_y + g.new_h, g.pad_x : g.pad_x + g.new_w]
        if (g.new_h, g.new_w) == (h, w):
            region[...] = image
        else:
            buf = self._resized.get((g.new_h, g.new_w))
            if buf is None:
                if len(self._resized) > 8:  # a camera has one size; an image folder may have a few
                    self._resized.clear()
                buf = self._resized[(g.new_h, g.new_w)] = np.empty((g.new_h, g.new_w, 3), np.uint8)
            cv2.resize(image, (g.new_w, g.new_h), dst=buf, interpolation=cv2.INTER_LINEAR)
            region[...] = buf
        return self.canvas, g

    def __call__(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[LetterboxGeometry]]:
        """Fill the reused tensor with up to ``batch`` images; returns a view of the filled part."""
        if not 0 < len(images) <= self.batch:
            raise ValueError(f"expected 1..{self.batch} images, got {len(images)}")
        geoms = []
        for i, image in enumerate(images):
            canvas, g = self.letterbox(image)
            # BGR -> RGB, HWC -> CHW and scale in one pass into the reused tensor
            np.multiply(
                canvas[:, :, ::-1].transpose(2, 0, 1), 1.0 / 255.0, out=self.tensor[i], casting="unsafe"
            )
            geoms.append(g)
        return self.tensor[: len(images)], geoms
