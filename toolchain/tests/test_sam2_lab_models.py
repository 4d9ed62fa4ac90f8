"""The lab's SAM2 export (``make -C toolchain sam2-lab``) runs on the device runtime's segmenter."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import ROOT, require
from rvm_edge.segment import load_segmenter

pytestmark = pytest.mark.sam2


def test_lab_sam2_models_run_with_the_expected_shapes() -> None:
    """The random-weight SAM2-tiny built by `make -C toolchain sam2-lab`: flow and shapes only (masks are noise)."""
    manifest = ROOT / "app" / "models" / "lab" / "sam2" / "manifest.json"
    require(manifest.is_file(), "no SAM2 lab models: run `make -C toolchain sam2-lab`")
    seg = load_segmenter(manifest)
    entry = json.loads(manifest.read_text())["models"]
    assert any(m["role"] == "sam2_encoder" for m in entry)
    frame = np.full((240, 320, 3), 120, np.uint8)
    ((mask, score),), _ = seg.segment(frame, [(100.0, 60.0, 220.0, 200.0)])
    assert mask.shape == (240, 320) and math.isfinite(score)
