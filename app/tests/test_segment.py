"""SAM2 flow (encode once, decode per box) and the mask geometry the platform receives."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnx_models import tiny_sam2
from rvm_edge.manifest import Manifest, ManifestError, ModelEntry, sha256_file, write_manifest
from rvm_edge.segment import Sam2Segmenter, load_segmenter, mask_geometry, write_mask_png


def test_geometry_of_a_tilted_ellipse() -> None:
    mask = np.zeros((200, 300), np.uint8)
    cv2.ellipse(mask, (150, 100), (80, 20), 30, 0, 360, 1, -1)
    g = mask_geometry(mask.astype(bool), (60.0, 40.0, 240.0, 160.0))
    assert g.area_px == pytest.approx(math.pi * 80 * 20, rel=0.05)  # rasterised edge adds a little
    assert g.orientation_deg == pytest.approx(30, abs=1.0)
    assert g.fill_ratio == pytest.approx(g.area_px / (180 * 120))
    assert g.centroid == pytest.approx((150, 100), abs=0.5)


def test_geometry_of_an_empty_mask() -> None:
    g = mask_geometry(np.zeros((10, 10), bool), (0, 0, 4, 4))
    assert g.area_px == 0 and g.fill_ratio == 0.0


@pytest.mark.parametrize("encoder_backend", ["onnxruntime", "openvino"])
def test_encode_once_decode_per_box_gives_frame_sized_masks(tmp_path: Path, encoder_backend: str) -> None:
    if encoder_backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is a runtime extra (installed in app/.venv)")
    enc, dec = tiny_sam2(tmp_path)
    seg = Sam2Segmenter(enc, dec, encoder_backend=encoder_backend, cache_dir=tmp_path / "ov-cache")
    frame = np.full((120, 160, 3), 100, np.uint8)
    results, timings = seg.segment(frame, [(40.0, 30.0, 120.0, 90.0), (0.0, 0.0, 20.0, 20.0)])
    assert len(results) == 2 and set(timings) == {"sam2_encode_ms", "sam2_decode_ms"}
    mask, score = results[0]
    assert mask.shape == (120, 160) and mask.dtype == bool
    assert score == pytest.approx(0.9)  # the best of the three candidate masks
    assert mask[60, 80] and not mask[0, 0]  # the disc in the middle, scaled to the frame
    path = write_mask_png(mask, tmp_path / "masks" / "00000001.png")
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.shape == (120, 160) and set(np.unique(back)) == {0, 255}


def _sam2_manifest(folder: Path, enc: Path, dec: Path, enc_shape: tuple[int, ...]) -> Path:
    entries = tuple(
        ModelEntry(name, role, "1", p.name, sha256_file(p), "onnx", "fp32", shape)
        for name, role, p, shape in (
            ("sam2-enc", "sam2_encoder", enc, enc_shape),
            ("sam2-dec", "sam2_decoder", dec, (1, 3, 4, 4)),
        )
    )
    write_manifest(folder / "manifest.json", Manifest(entries))
    return folder / "manifest.json"


def test_segmenter_from_manifest_is_verified(tmp_path: Path) -> None:
    enc, dec = tiny_sam2(tmp_path)
    assert load_segmenter(_sam2_manifest(tmp_path, enc, dec, (1, 3, 64, 64))).size == (64, 64)
    with pytest.raises(ManifestError, match=r"encoder input \[64, 64\] disagrees"):
        load_segmenter(_sam2_manifest(tmp_path, enc, dec, (1, 3, 1024, 1024)))
    enc.write_bytes(b"corrupt")
    with pytest.raises(ManifestError, match="sha256 is"):
        load_segmenter(tmp_path / "manifest.json")
