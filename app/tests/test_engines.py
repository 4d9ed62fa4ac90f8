"""rvm-edge refuses an engine that is not its model's: wrong model, wrong backend, corrupt, no record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rvm_edge.engines import EngineMismatch, verify_engine
from rvm_edge.manifest import ModelEntry

MODEL = ModelEntry(
    "det", "detector", "1", "det.onnx", "a" * 64, "onnx", "fp32", (1, 3, 320, 320), ("bottle",)
)


def write_engine(tmp_path: Path, **field_changes: object) -> Path:
    """An engine and its key.json laid out as the model_engine module writes them."""
    fields = {
        "schema": 1,
        "onnx_sha256": MODEL.sha256,
        "backend": "tensorrt",
        "backend_version": "10.3.0",
        "device": "jetson:Orin Nano:L4T R36.4.3",
        "precision": "fp16",
        "input_shape": [1, 3, 320, 320],
        "builder_flags": ["--memPoolSize=workspace:1024M", "--fp16"],
        **field_changes,
    }
    key = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    engine = tmp_path / key / "det.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"serialized engine bytes")
    doc = {"key": key, "fields": fields, "engine": engine.name, "size": 23, "build_s": 1.0,
           "engine_sha256": hashlib.sha256(engine.read_bytes()).hexdigest()}  # fmt: skip
    (engine.parent / "key.json").write_text(json.dumps(doc))
    return engine


def test_the_engine_of_the_model_is_accepted(tmp_path: Path) -> None:
    record = verify_engine(write_engine(tmp_path), MODEL, "tensorrt")
    assert (record.backend, record.backend_version, record.precision) == ("tensorrt", "10.3.0", "fp16")


def test_an_engine_of_another_model_is_refused_naming_both(tmp_path: Path) -> None:
    engine = write_engine(tmp_path, onnx_sha256="b" * 64)
    with pytest.raises(
        EngineMismatch, match=r"not the engine of model det: it was built from ONNX sha256 bbbbbbbbbbbb"
    ):
        verify_engine(engine, MODEL, "tensorrt")


def test_an_engine_for_another_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineMismatch, match="it is a tensorrt engine, the configured backend is openvino"):
        verify_engine(write_engine(tmp_path), MODEL, "openvino")


def test_a_corrupt_engine_is_refused(tmp_path: Path) -> None:
    engine = write_engine(tmp_path)
    engine.write_bytes(b"serialized engine bytez")
    with pytest.raises(EngineMismatch, match="corrupt engine"):
        verify_engine(engine, MODEL, "tensorrt")


def test_an_engine_without_its_record_or_with_an_edited_one_is_refused(tmp_path: Path) -> None:
    engine = write_engine(tmp_path)
    doc = json.loads((engine.parent / "key.json").read_text())
    doc["fields"]["onnx_sha256"] = MODEL.sha256.replace("a", "c")
    (engine.parent / "key.json").write_text(json.dumps(doc))
    with pytest.raises(EngineMismatch, match="does not match its own fields"):
        verify_engine(engine, MODEL, "tensorrt")
    (engine.parent / "key.json").unlink()
    with pytest.raises(EngineMismatch, match=r"no readable key\.json"):
        verify_engine(engine, MODEL, "tensorrt")
