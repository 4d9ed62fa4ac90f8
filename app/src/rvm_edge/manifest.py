"""The model manifest: which model files a device runs and how to tell they are the right ones.

A manifest (``manifest.json``) sits beside the model files it describes. The runtime refuses to
start when a file is missing, altered (sha256) or disagrees with what the manifest says about it
(input shape, class names), because a silently swapped model makes every later decision wrong.
The model toolchain writes manifests through :func:`write_manifest`; the device reads them
through :func:`load_manifest` and checks them with :func:`verify`.

Schema (version 1)::

    {"schema": 1, "models": [ModelEntry, ...]}
    ModelEntry = {"name", "role", "version", "file", "sha256", "format", "precision",
                  "input_shape", "classes", "source"}
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROLES = ("detector", "sam2_encoder", "sam2_decoder")
FORMATS = ("onnx", "openvino_ir", "tensorrt_engine")
PRECISIONS = ("fp32", "fp16", "int8")
VERIFY_COMMAND = "rvm-edge models verify {path}"
REBUILD_HINT = (
    "restore the file from the release bundle, or rebuild the lab models with `make -C toolchain lab-models` "
    "(SAM2: `make -C toolchain sam2-lab`), then run `{verify}`"
)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ModelEntry:
    """One model file and the facts the runtime checks before trusting it."""

    name: str
    role: str
    version: str
    file: str
    sha256: str
    format: str
    precision: str
    input_shape: tuple[int, ...]
    classes: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["classes"] = list(self.classes)
        return data


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest; ``path`` is where it was read from (files are relative to its folder)."""

    models: tuple[ModelEntry, ...]
    path: Path | None = None
    schema: int = SCHEMA_VERSION

    @property
    def root(self) -> Path:
        return self.path.parent if self.path is not None else Path(".")

    def file_path(self, entry: ModelEntry) -> Path:
        return self.root / entry.file

    def by_role(self, role: str) -> ModelEntry:
        """The model to run for ``role``: the first listed (a manifest lists its preferred variant
        first, e.g. FP32 before INT8); others are chosen by name. Error naming the manifest if none."""
        for m in self.models:
            if m.role == role:
                return m
        roles = sorted({m.role for m in self.models})
        raise ManifestError(f"{self.path}: no model with role {role!r} (roles: {roles})")

    def by_name(self, name: str) -> ModelEntry:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models) or "none"
        raise ManifestError(f"{self.path}: no model named {name!r} (models: {known})")

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "models": [m.to_json() for m in self.models]}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large SAM2 encoders need no extra memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _require(obj: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ManifestError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ManifestError(f"{where}: key {key!r} must be {name}, got {type(value).__name__}")
    return value


def _choice(value: str, allowed: tuple[str, ...], key: str, where: str) -> str:
    if value not in allowed:
        raise ManifestError(f"{where}: key {key!r} is {value!r}, expected one of {', '.join(allowed)}")
    return value


def _parse_entry(raw: Any, where: str) -> ModelEntry:
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: must be an object, got {type(raw).__name__}")
    known = {
        "name",
        "role",
        "version",
        "file",
        "sha256",
        "format",
        "precision",
        "input_shape",
        "classes",
        "source",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ManifestError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
        )
    name = _require(raw, "name", str, where)
    where = f"{where} ({name})"
    role = _choice(_require(raw, "role", str, where), ROLES, "role", where)
    sha = _require(raw, "sha256", str, where)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"{where}: key 'sha256' must be 64 lowercase hex digits, got {sha!r}")
    shape = _require(raw, "input_shape", list, where)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ManifestError(
            f"{where}: key 'input_shape' must be a non-empty list of positive ints, got {shape!r}"
        )
    classes = raw.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise ManifestError(f"{where}: key 'classes' must be a list of non-empty strings")
    if role == "detector" and not classes:
        raise ManifestError(f"{where}: key 'classes' must list the class names of a detector")
    if role != "detector" and classes:
        raise ManifestError(f"{where}: key 'classes' must be empty for role {role!r}")
    file = _require(raw, "file", str, where)
    if not file or Path(file).is_absolute() or ".." in Path(file).parts:
        raise ManifestError(f"{where}: key 'file' must be a path relative to the manifest, got {file!r}")
    source = raw.get("source", {})
    if not isinstance(source, dict):
        raise ManifestError(f"{where}: key 'source' must be an object")
    return ModelEntry(
        name=name,
        role=role,
        version=_require(raw, "version", str, where),
        file=file,
        sha256=sha,
        format=_choice(_require(raw, "format", str, where), FORMATS, "format", where),
        precision=_choice(_require(raw, "precision", str, where), PRECISIONS, "precision", where),
        input_shape=tuple(shape),
        classes=tuple(classes),
        source=source,
    )


def parse_manifest(data: Any, path: Path | None = None) -> Manifest:
    """Validate a manifest already decoded from JSON; errors name ``path`` and the key."""
    where = str(path) if path is not None else "manifest"
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: top level must be an object with keys 'schema' and 'models'")
    schema = _require(data, "schema", int, where)
    if schema != SCHEMA_VERSION:
        raise ManifestError(f"{where}: key 'schema' is {schema}, this rvm-edge reads schema {SCHEMA_VERSION}")
    raw_models = _require(data, "models", list, where)
    models = tuple(_parse_entry(m, f"{where}: models[{i}]") for i, m in enumerate(raw_models))
    names = [m.name for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ManifestError(f"{where}: key 'models' has duplicate name(s) {', '.join(dupes)}")
    return Manifest(models=models, path=path, schema=schema)


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json``; the error says which file and which key is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"{p}: model manifest not found; build the lab models with `make -C toolchain lab-models` "
            "or install a release bundle that carries one"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_manifest(data, p.resolve())


def write_manifest(path: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a manifest."""
    p = Path(path)
    parse_manifest(manifest.to_json(), p)  # refuse to write what load_manifest would refuse to read
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def onnx_class_names(metadata: dict[str, str]) -> list[str] | None:
    """Class names from an ultralytics ONNX export's ``names`` metadata (a Python dict literal)."""
    raw = metadata.get("names")
    if raw is None:
        return None
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    return None


def _check_onnx(model_path: Path, entry: ModelEntry) -> list[str]:
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for corrupt files
        return [f"{model_path}: not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:200]})"]
    problems = []
    shape = list(sess.get_inputs()[0].shape)
    expected = list(entry.input_shape)
    fixed = [d if isinstance(d, int) else None for d in shape]
    if len(fixed) != len(expected) or any(
        d is not None and d != e for d, e in zip(fixed, expected, strict=True)
    ):
        problems.append(
            f"{model_path}: graph input shape {shape} disagrees with the manifest's input_shape {expected}"
        )
    if entry.role == "detector":
        names = onnx_class_names(sess.get_modelmeta().custom_metadata_map)
        if names is not None and names != list(entry.classes):
            problems.append(
                f"{model_path}: class names in the model {names} disagree with the manifest's classes "
                f"{list(entry.classes)}"
            )
    return problems


def verify_entry(manifest: Manifest, entry: ModelEntry, check_graph: bool = True) -> list[str]:
    """Problems with one model file (empty when it is the one the manifest describes)."""
    model_path = manifest.file_path(entry)
    hint = REBUILD_HINT.format(verify=VERIFY_COMMAND.format(path=manifest.path))
    if not model_path.is_file():
        return [f"{model_path}: missing (model {entry.name!r}, expected sha256 {entry.sha256}); {hint}"]
    actual = sha256_file(model_path)
    if actual != entry.sha256:
        return [
            f"{model_path}: sha256 is {actual}, the manifest expects {entry.sha256} "
            f"(model {entry.name!r} is corrupt or was replaced); {hint}"
        ]
    if check_graph and entry.format == "onnx":
        return _check_onnx(model_path, entry)
    return []


def verify(manifest_path: str | os.PathLike[str], check_graph: bool = True) -> list[str]:
    """Every problem with a manifest and its files, one sentence each; an empty list means all good."""
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        return [str(exc)]
    problems: list[str] = []
    for entry in manifest.models:
        problems.extend(verify_entry(manifest, entry, check_graph))
    return problems
