"""Built inference engines and the check that one belongs to the model the manifest names.

Why: an engine (TensorRT plan, OpenVINO blob, ONNX Runtime optimized model) is built on the device
by Ansible's ``model_engine`` module from one ONNX file, and is specific to that file, the backend
and its version, the device, the precision and the input shape. The module writes ``key.json``
beside each engine, naming all of those and the engine's own sha256. Before rvm-edge runs an
engine it checks that record against the manifest entry of the model it was asked to run, so an
engine built from another model, for another backend, or corrupted on disk is refused with a
message saying which, instead of giving wrong detections. Standard library only.

``key.json`` (schema 1)::

    {"key": hex, "engine": file name, "engine_sha256": hex, "size": int, "build_s": float, "onnx": path,
     "fields": {"schema": 1, "onnx_sha256", "backend", "backend_version", "device", "precision",
                "input_shape", "builder_flags"}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvm_edge.manifest import ModelEntry, sha256_file

KEY_FILE = "key.json"
REBUILD = "rebuild it on the device: ansible-playbook playbooks/deploy.yml --tags model_engines"


class EngineMismatch(ValueError):
    """An engine that must not run; the message names the engine file and what does not match."""


@dataclass(frozen=True)
class EngineRecord:
    """What key.json says about an engine that passed :func:`verify_engine`."""

    path: Path
    key: str
    backend: str
    backend_version: str
    device: str
    precision: str


def _canonical_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verify_engine(engine: Path, model: ModelEntry, backend: str) -> EngineRecord:
    """Check ``engine`` against its key.json and against ``model`` (the manifest entry it must run)."""
    key_path = engine.parent / KEY_FILE
    if not engine.is_file():
        raise EngineMismatch(f"{engine}: engine missing; {REBUILD}")
    try:
        doc = json.loads(key_path.read_text())
        fields = doc["fields"]
        recorded_sha, key = str(doc["engine_sha256"]), str(doc["key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineMismatch(
            f"{engine}: no readable {KEY_FILE} beside it ({exc}), so nothing says which model it was built "
            f"from; {REBUILD}"
        ) from exc
    if _canonical_key(fields) != key:
        raise EngineMismatch(
            f"{key_path}: its key does not match its own fields (edited by hand?); {REBUILD}"
        )
    if doc.get("engine") not in (None, engine.name):
        raise EngineMismatch(f"{key_path}: describes {doc.get('engine')}, not {engine.name}")
    actual = sha256_file(engine)
    if actual != recorded_sha:
        raise EngineMismatch(
            f"{engine}: corrupt engine, sha256 {actual[:12]} but {KEY_FILE} recorded {recorded_sha[:12]}; {REBUILD}"
        )
    problems = []
    if fields.get("onnx_sha256") != model.sha256:
        problems.append(
            f"it was built from ONNX sha256 {str(fields.get('onnx_sha256'))[:12]}, model {model.name} is "
            f"{model.sha256[:12]}"
        )
    if fields.get("backend") != backend:
        problems.append(f"it is a {fields.get('backend')} engine, the configured backend is {backend}")
    if list(fields.get("input_shape", [])) != list(model.input_shape):
        problems.append(
            f"its input shape is {fields.get('input_shape')}, the manifest says {list(model.input_shape)}"
        )
    if problems:
        raise EngineMismatch(
            f"{engine}: not the engine of model {model.name}: {'; '.join(problems)}; {REBUILD}"
        )
    return EngineRecord(
        engine, key, str(fields["backend"]), str(fields["backend_version"]), str(fields["device"]),
        str(fields["precision"]),
    )  # fmt: skip
