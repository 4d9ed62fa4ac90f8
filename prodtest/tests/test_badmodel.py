"""The corrupt-model release: damaged the way an export gone wrong damages it, so that only reading
the model (the engine build on the device) can find it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from prodtest.badmodel import corrupt_models
from prodtest.lab import LabError


def models(tmp_path: Path, roles: tuple[str, ...] = ("detector", "detector")) -> Path:
    src = tmp_path / "lab"
    (src / "sam2").mkdir(parents=True)
    entries = []
    for i, role in enumerate(roles):
        data = bytes(range(256)) * (i + 4)
        (src / f"m{i}.onnx").write_bytes(data)
        entries.append({"file": f"m{i}.onnx", "role": role, "sha256": hashlib.sha256(data).hexdigest()})
    (src / "manifest.json").write_text(json.dumps({"schema": 1, "models": entries}))
    (src / "best.pt").write_bytes(b"weights")
    return src


def test_every_detector_is_cut_and_the_manifest_matches_the_damage(tmp_path: Path) -> None:
    src = models(tmp_path)
    damaged = corrupt_models(src, tmp_path / "out")
    assert damaged == ["m0.onnx", "m1.onnx"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for entry in manifest["models"]:
        data = (tmp_path / "out" / entry["file"]).read_bytes()
        assert len(data) == len((src / entry["file"]).read_bytes()) // 2
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()  # no checksum can catch it
    assert not (tmp_path / "out" / "sam2").exists() and not (tmp_path / "out" / "best.pt").exists()
    assert (src / "m0.onnx").stat().st_size == 256 * 4  # the lab's own models untouched


def test_no_detector_to_damage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="names no detector"):
        corrupt_models(models(tmp_path, ("segmenter",)), tmp_path / "out")
