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
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rvm_edge.manifest import Manifest, ModelEntry, sha256_file

KEY_FILE = "key.json"
_NV_TEGRA = re.compile(r"^# R(\d+) \(release\), REVISION: ([0-9.]+)")
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


def verify_engine(
    engine: Path,
    model: ModelEntry,
    backend: str,
    *,
    device: str | None = None,
    backend_version: str | None = None,
) -> EngineRecord:
    """Check ``engine`` against its key.json and against ``model`` (the manifest entry it must run).

    ``device`` and ``backend_version``, when given, are this machine's (see :func:`device_identity`
    and :func:`installed_backend_version`): an engine built on another device or by another version
    of the backend is refused too (a TensorRT plan does not load, or worse, on another version).
    """
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
    if device is not None and fields.get("device") != device:
        problems.append(f"it was built on device {fields.get('device')!r}, this device is {device!r}")
    if backend_version is not None and not _same_version(str(fields.get("backend_version")), backend_version):
        problems.append(
            f"it was built by {fields.get('backend')} {fields.get('backend_version')}, this device has "
            f"{backend} {backend_version}"
        )
    if problems:
        raise EngineMismatch(
            f"{engine}: not the engine of model {model.name}: {'; '.join(problems)}; {REBUILD}"
        )
    return EngineRecord(
        engine, key, str(fields["backend"]), str(fields["backend_version"]), str(fields["device"]),
        str(fields["precision"]),
    )  # fmt: skip


def _same_version(recorded: str, installed: str) -> bool:
    """TensorRT's banner says 10.3.0, its Python package 10.3.0.30: the first three parts decide."""
    return recorded.split(".")[:3] == installed.split(".")[:3]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def device_identity() -> str:
    """This machine as the ``model_engine`` module names it in key.json (``fields.device``).

    Must agree with ``detect_device`` in library/model_engine.py (tests/model_engine checks that they
    do): on a Jetson ``jetson:<device-tree model>:L4T R<release>``, elsewhere ``cpu:<arch>:<CPU model>``.
    """
    cpu = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.lower().startswith(("model name", "hardware")):
            cpu = line.split(":", 1)[1].strip()
            break
    tegra = _read("/etc/nv_tegra_release")
    if tegra is not None:
        match = _NV_TEGRA.match(tegra.splitlines()[0] if tegra else "")
        release = f"R{match[1]}.{match[2]}" if match else "unreadable /etc/nv_tegra_release"
        board = (_read("/proc/device-tree/model") or "unknown Jetson").replace("\x00", "").strip()
        return f"jetson:{board}:L4T {release}"
    return f"cpu:{platform.machine()}:{(cpu or 'unknown CPU').strip()}"


_DISTRIBUTIONS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "openvino": ("openvino",)}


def installed_backend_version(backend: str) -> str | None:
    """The version of ``backend`` this Python runs, None when it cannot tell (the backend will then
    fail to load on its own, with its own message)."""
    if backend == "tensorrt":
        try:
            import tensorrt  # type: ignore[import-not-found]  # Jetson: python3-libnvinfer
        except ImportError:
            return None
        return str(tensorrt.__version__)
    for dist in _DISTRIBUTIONS.get(backend, ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_engines(
    engines: Mapping[str, Path],
    manifests: Sequence[Manifest],
    backend: str,
    *,
    device: str | None = None,
    backend_version: str | None = None,
) -> dict[str, EngineRecord]:
    """Every configured engine (``models.engines``: model name -> engine file) checked against the
    model of that name in ``manifests``; the first that does not belong raises :class:`EngineMismatch`."""
    models = {m.name: m for manifest in manifests for m in manifest.models}
    checked = {}
    for name, engine in sorted(engines.items()):
        model = models.get(name)
        if model is None:
            raise EngineMismatch(
                f"models.engines names {name!r} ({engine}), a model no manifest lists "
                f"(expected one of {sorted(models)}); {REBUILD}"
            )
        checked[name] = verify_engine(engine, model, backend, device=device, backend_version=backend_version)
    return checked


def check_engines_here(
    engines: Mapping[str, Path], manifests: Sequence[Manifest], backend: str
) -> dict[str, EngineRecord]:
    """:func:`check_engines` for this device and the backend version installed here (rvm-edge's start
    and ``rvm-edge models verify``)."""
    return check_engines(
        engines,
        manifests,
        backend,
        device=device_identity(),
        backend_version=installed_backend_version(backend),
    )
