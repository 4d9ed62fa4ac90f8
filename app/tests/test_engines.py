"""rvm-edge refuses an engine that is not its model's: wrong model, wrong backend, corrupt, no record."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rvm_edge.cli import main
from rvm_edge.engines import (
    EngineMismatch,
    check_engines,
    device_identity,
    installed_backend_version,
    verify_engine,
)
from rvm_edge.manifest import Manifest, ModelEntry, load_manifest
from service.helpers import write_config

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


def test_an_engine_built_on_another_device_or_by_another_version_is_refused(tmp_path: Path) -> None:
    engine = write_engine(tmp_path)
    with pytest.raises(
        EngineMismatch,
        match=r"det\.engine: not the engine of model det: it was built on device "
        r"'jetson:Orin Nano:L4T R36\.4\.3', this device is 'jetson:Orin Nano:L4T R36\.3\.0'",
    ):
        verify_engine(engine, MODEL, "tensorrt", device="jetson:Orin Nano:L4T R36.3.0")
    with pytest.raises(
        EngineMismatch, match=r"built by tensorrt 10\.3\.0, this device has tensorrt 10\.7\.0\.23"
    ):
        verify_engine(engine, MODEL, "tensorrt", backend_version="10.7.0.23")
    # the Python package says 10.3.0.30 where trtexec's banner said 10.3.0: the same TensorRT
    record = verify_engine(
        engine, MODEL, "tensorrt", device="jetson:Orin Nano:L4T R36.4.3", backend_version="10.3.0.30"
    )
    assert record.path == engine


def test_check_engines_names_a_model_no_manifest_lists(tmp_path: Path) -> None:
    manifest = Manifest((MODEL,), tmp_path / "manifest.json")
    assert check_engines({"det": write_engine(tmp_path)}, [manifest], "tensorrt")["det"].precision == "fp16"
    with pytest.raises(
        EngineMismatch,
        match=r"models\.engines names 'yolo-old' .*, a model no manifest lists \(expected one of \['det'\]\)",
    ):
        check_engines({"yolo-old": tmp_path / "x.engine"}, [manifest], "tensorrt")


def test_this_device_is_named_like_the_model_engine_module_names_it() -> None:
    identity = device_identity()
    assert identity.startswith(("cpu:", "jetson:")) and "unknown" not in identity.split(":", 2)[1]
    assert installed_backend_version("onnxruntime")  # the runtime venv has it
    assert installed_backend_version("no-such-backend") is None


def engine_for(manifest_path: Path, tmp_path: Path, backend: str = "onnxruntime", **changes: object) -> Path:
    """An engine of the manifest's detector as the module builds it here (this device, this version)."""
    entry = load_manifest(manifest_path).by_role("detector")
    fields = {
        "schema": 1, "onnx_sha256": entry.sha256, "backend": backend,
        "backend_version": installed_backend_version(backend), "device": device_identity(), "precision": "fp32",
        "input_shape": list(entry.input_shape), "builder_flags": [], **changes,
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    engine = tmp_path / "engines" / key / f"{entry.name}.ort.onnx"
    engine.parent.mkdir(parents=True)
    engine.write_bytes(b"optimized model bytes")
    doc = {"key": key, "fields": fields, "engine": engine.name, "size": 21, "build_s": 0.1,
           "engine_sha256": hashlib.sha256(engine.read_bytes()).hexdigest()}  # fmt: skip
    (engine.parent / "key.json").write_text(json.dumps(doc))
    return engine


def device_config(tmp_path: Path, manifest: Path, engine: Path) -> Path:
    name = load_manifest(manifest).by_role("detector").name
    models = {"manifest": str(manifest), "backend": "onnxruntime", "engines": {name: str(engine)}}
    return write_config(
        tmp_path,
        manifest,
        "http://127.0.0.1:9/api/v1",
        tmp_path,
        models={**models, "segmentation": {"enabled": False}},
    )


def test_models_verify_checks_the_engines_of_a_configuration(
    one_bottle_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = engine_for(one_bottle_model, tmp_path)
    config = device_config(tmp_path, one_bottle_model, engine)
    assert main(["models", "verify", "--config", str(config)]) == 0
    assert f"ok   {engine} (" in capsys.readouterr().out
    engine.write_bytes(b"optimized model bytez")  # tampered with
    assert main(["models", "verify", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"FAIL {engine}: corrupt engine") and "rebuild it on the device" in err


def test_the_service_refuses_to_start_with_an_engine_built_for_another_backend(
    one_bottle_model: Path, tmp_path: Path
) -> None:
    engine = engine_for(one_bottle_model, tmp_path, backend="openvino", backend_version="2024.0.0")
    config = device_config(tmp_path, one_bottle_model, engine)
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    result = subprocess.run(
        [sys.executable, "-m", "rvm_edge.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr  # EXIT_MODELS: the health gate rolls back
    assert f"{engine}: not the engine of model" in result.stdout
    assert "it is a openvino engine, the configured backend is onnxruntime" in result.stdout
