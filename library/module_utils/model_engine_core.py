"""The model_engine plan: which engine a model needs on this device, and whether it must be built.

Why a file of its own: the decision (is the engine we have the engine this model, backend,
library version, device, precision and shape call for?) and the refusals (a model that is not the
manifest's, a precision the backend cannot do) must be trustworthy before any byte is written, and
check mode must report exactly what a real run would do. So this module does no I/O: the Ansible
module feeds it what it read (the ONNX sha256, the backend version, the device identity, the key
file found on disk) and executes the plan it returns.

The engine key is the sha256 of a canonical JSON of everything an engine depends on. Engines live
in ``<engines_dir>/<key>/`` beside a ``key.json`` naming those inputs and the engine's own sha256,
so engines are shared by every release whose model and device give the same key, a release that
only changes code builds nothing, and a corrupt engine (its bytes no longer match ``key.json``)
is told apart from a missing one. Standard library only: it runs on the device's system Python.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

BACKENDS = ("tensorrt", "openvino", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
AUTO = "auto"
# The x86 flags (/proc/cpuinfo) of the instructions that compute in bf16: Cooper Lake, Sapphire Rapids
# and later Xeons, AMD Zen 4 and later. OpenVINO also accepts bf16 on any AVX-512 CPU and emulates it
# there; that emulation was never measured here, so such a CPU gets fp32.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# What each backend can build on the devices this project targets (Jetson GPU, x86/arm CPU).
_BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("fp32", "fp16", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "onnxruntime": ("fp32", "int8"),
}
ENGINE_SUFFIX = {"tensorrt": ".engine", "openvino": ".blob", "onnxruntime": ".ort.onnx"}
KEY_FILE = "key.json"
KEY_SCHEMA = 1
TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"
# trtexec prints this banner first on every run, e.g. "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # ..."
_TRT_BANNER = re.compile(r"\[TensorRT v(\d+)\]")
_TRT_RESULT = re.compile(r"^&&&& (PASSED|FAILED|WAIVED) TensorRT\.trtexec", re.MULTILINE)
_NV_TEGRA = re.compile(r"^# R(\d+) \(release\), REVISION: ([0-9.]+)")


class EngineError(Exception):
    """A request the module refuses; the message names the file, option or value at fault."""


@dataclass(frozen=True)
class Request:
    """What the caller asks for (module options, already type-checked by Ansible)."""

    name: str
    onnx: str
    sha256: str
    input_shape: tuple[int, ...]
    backend: str
    precision: str
    model_precision: str = "fp32"
    calibration_cache: str | None = None
    workspace_mb: int = 1024
    builder_flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observed:
    """What the module read on the host before planning."""

    onnx_sha256: str
    backend_version: str
    device: str
    key_file: Mapping[str, Any] | None = None  # the parsed key.json in the key's directory, if any
    engine_sha256: str | None = None  # sha256 of the engine file there, if it exists


@dataclass
class Plan:
    """The decision: ``action`` is ``reuse`` or ``build``; ``reason`` says why in one line."""

    action: str
    reason: str
    key: str
    key_fields: dict[str, Any]
    directory: str
    engine: str
    steps: list[str] = field(default_factory=list)


def _sha_ok(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def native_bf16(cpuinfo: str | None) -> bool:
    """Whether the CPU that ``/proc/cpuinfo`` describes computes in bf16 itself (see BF16_FLAGS)."""
    flags = next((line for line in (cpuinfo or "").splitlines() if line.startswith("flags")), "")
    return not BF16_FLAGS.isdisjoint(flags.partition(":")[2].split())


def resolve_precision(req: Request, bf16: bool) -> tuple[Request, str]:
    """The request at the precision the engine will have, and one line saying how it was chosen.

    Why ``auto``: the lab detector loses no accuracy at bf16 on OpenVINO (test mAP50 0.9156 vs
    0.9159) and costs a third less CPU per frame (16 vs 24 ms), but only on a CPU with bf16
    instructions; a fleet of mixed x86 devices needs one setting that gives bf16 there and fp32
    elsewhere. The resolved precision is what goes into the key, so a bf16 engine is never taken
    for an fp32 one. A bf16 asked by name on a CPU without the instructions is refused (see
    validate), not quietly changed.
    """
    if req.precision != AUTO:
        return req, f"{req.precision} as asked"
    flags = " or ".join(sorted(BF16_FLAGS))
    if req.model_precision == "int8":
        chosen, why = "int8", "auto: the model is INT8 (QDQ)"
    elif req.backend == "tensorrt":
        chosen, why = "fp16", "auto: fp16 on TensorRT"
    elif req.backend == "openvino" and bf16:
        chosen, why = "bf16", f"auto: bf16, this CPU has bf16 instructions ({flags})"
    elif req.backend == "openvino":
        chosen, why = "fp32", f"auto: fp32, this CPU has no bf16 instructions ({flags})"
    else:
        chosen, why = "fp32", f"auto: fp32 on {req.backend}"
    return replace(req, precision=chosen), why


def validate(req: Request, bf16: bool = True) -> None:
    """Refuse a request that cannot give a usable engine, before anything is read or written."""
    if req.backend not in BACKENDS:
        raise EngineError(f"backend {req.backend!r} is not supported; expected one of {', '.join(BACKENDS)}")
    allowed = _BACKEND_PRECISIONS[req.backend]
    if req.precision not in allowed:
        raise EngineError(
            f"{req.name}: precision {req.precision!r} is not supported by the {req.backend} backend; "
            f"it can build {', '.join(allowed)} (or {AUTO})"
        )
    if req.precision == "bf16" and not bf16:
        raise EngineError(
            f"{req.name}: precision 'bf16' needs a CPU with bf16 instructions ({', '.join(sorted(BF16_FLAGS))} "
            f"in /proc/cpuinfo) and this one has none; ask for {AUTO} (bf16 where the CPU has them, else "
            "fp32) or fp32"
        )
    if not _sha_ok(req.sha256):
        raise EngineError(f"{req.name}: sha256 must be 64 lowercase hex digits, got {req.sha256!r}")
    if not req.input_shape or any(d <= 0 for d in req.input_shape):
        raise EngineError(f"{req.name}: input_shape must be positive integers, got {list(req.input_shape)}")
    if req.precision == "int8" and req.model_precision != "int8":
        if req.backend != "tensorrt":
            raise EngineError(
                f"{req.name}: {req.backend} cannot quantize at build time; INT8 needs an INT8 (QDQ) ONNX "
                f"from the toolchain, and the manifest says this model is {req.model_precision}"
            )
        if not req.calibration_cache:
            raise EngineError(
                f"{req.name}: INT8 TensorRT engine from a {req.model_precision} ONNX needs a calibration "
                "cache (option calibration_cache, the file the toolchain ships beside the model)"
            )
    if req.calibration_cache and req.precision != "int8":
        raise EngineError(
            f"{req.name}: calibration_cache is only used with precision int8, not {req.precision}"
        )
    if req.workspace_mb <= 0:
        raise EngineError(f"{req.name}: workspace_mb must be positive, got {req.workspace_mb}")
    for flag in req.builder_flags:
        if not flag.startswith("--") or flag.split("=", 1)[0] in _TRTEXEC_OWNED:
            raise EngineError(
                f"{req.name}: builder flag {flag!r} is not allowed; flags start with -- and may not be one "
                f"the module sets itself ({', '.join(sorted(_TRTEXEC_OWNED))})"
            )
    if req.builder_flags and req.backend != "tensorrt":
        raise EngineError(
            f"{req.name}: builder_flags are trtexec flags; the {req.backend} backend takes none"
        )


def check_onnx(req: Request, onnx_sha256: str, onnx_shape: Sequence[int] | None = None) -> None:
    """The ONNX file must be the one the manifest names (bytes, and input shape when read)."""
    if onnx_sha256 != req.sha256:
        raise EngineError(
            f"{req.onnx}: sha256 is {onnx_sha256} but the manifest says {req.sha256} for model {req.name}; "
            "the file is not the manifest's model (re-copy the release, or fix the manifest)"
        )
    if onnx_shape is not None and tuple(onnx_shape) != tuple(req.input_shape):
        raise EngineError(
            f"{req.onnx}: input shape is {list(onnx_shape)} but the manifest says {list(req.input_shape)} "
            f"for model {req.name}"
        )


def key_fields(req: Request, seen: Observed) -> dict[str, Any]:
    """Everything the engine depends on; a change in any of these needs a new engine."""
    return {
        "schema": KEY_SCHEMA,
        "onnx_sha256": seen.onnx_sha256,
        "backend": req.backend,
        "backend_version": seen.backend_version,
        "device": seen.device,
        "precision": req.precision,
        "input_shape": list(req.input_shape),
        "builder_flags": builder_flags(req),
    }


def engine_key(fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def builder_flags(req: Request) -> list[str]:
    """The flags that shape the engine (part of the key); file paths are not, they change nothing."""
    if req.backend == "tensorrt":
        flags = [f"--memPoolSize=workspace:{req.workspace_mb}M"]
        if req.precision == "fp16":
            flags.append("--fp16")
        elif req.precision == "int8":
            flags.append("--int8")
        return flags + list(req.builder_flags)
    if req.backend == "openvino":
        hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[req.precision]
        return [f"INFERENCE_PRECISION_HINT={hint}"]
    return ["graph_optimization_level=ORT_ENABLE_ALL"]


_TRTEXEC_OWNED = frozenset(
    {
        "--onnx",
        "--saveEngine",
        "--fp16",
        "--int8",
        "--calib",
        "--timingCacheFile",
        "--memPoolSize",
        "--skipInference",
    }
)


def plan(req: Request, seen: Observed, engines_dir: str) -> Plan:
    """Reuse the engine of this key when it is whole, else build it."""
    fields = key_fields(req, seen)
    key = engine_key(fields)
    directory = f"{engines_dir.rstrip('/')}/{key}"
    engine = f"{directory}/{req.name}{ENGINE_SUFFIX[req.backend]}"
    result = Plan("build", "", key, fields, directory, engine)
    recorded = seen.key_file
    if recorded is None and seen.engine_sha256 is None:
        result.reason = f"no engine for key {key[:12]} yet ({_what(fields)})"
    elif recorded is None:
        result.reason = f"{engine} has no {KEY_FILE} (an interrupted build): rebuilding"
    elif recorded.get("key") != key or recorded.get("fields") != fields:
        result.reason = f"{directory}/{KEY_FILE} does not describe key {key[:12]}: rebuilding"
    elif seen.engine_sha256 is None:
        result.reason = f"{engine} is missing although {KEY_FILE} is there: rebuilding"
    elif seen.engine_sha256 != recorded.get("engine_sha256"):
        result.reason = (
            f"{engine} is corrupt: sha256 {seen.engine_sha256[:12]} but {KEY_FILE} recorded "
            f"{str(recorded.get('engine_sha256'))[:12]}: rebuilding"
        )
    else:
        result.action = "reuse"
        result.reason = f"engine for key {key[:12]} is up to date ({_what(fields)})"
        return result
    result.steps = [
        f"build {req.backend} {req.precision} engine of {req.name} into a temporary file in {directory}",
        f"check the built engine and move it into place as {engine}",
        f"write {directory}/{KEY_FILE}",
    ]
    return result


def _what(fields: Mapping[str, Any]) -> str:
    return f"{fields['backend']} {fields['backend_version']} {fields['precision']} on {fields['device']}"


def key_document(p: Plan, engine_sha256: str, size: int, build_s: float, onnx: str) -> dict[str, Any]:
    """The key.json written beside a freshly built engine."""
    return {
        "key": p.key,
        "fields": p.key_fields,
        "engine": p.engine.rsplit("/", 1)[-1],
        "engine_sha256": engine_sha256,
        "size": size,
        "build_s": round(build_s, 3),
        "onnx": onnx,
    }


def verify_recorded(
    engine: str, recorded: Mapping[str, Any] | None, engine_sha256: str | None, key: str
) -> str:
    """Why an existing engine may not be used (empty string when it may): for state=verified."""
    if engine_sha256 is None:
        return f"{engine}: engine missing (build it with state=present)"
    if recorded is None:
        return f"{engine}: no {KEY_FILE} beside it, so nothing says which model it was built from"
    if recorded.get("key") != key:
        return f"{engine}: {KEY_FILE} names key {str(recorded.get('key'))[:12]}, this model needs {key[:12]}"
    if recorded.get("engine_sha256") != engine_sha256:
        return (
            f"{engine}: corrupt engine, sha256 {engine_sha256[:12]} but {KEY_FILE} recorded "
            f"{str(recorded.get('engine_sha256'))[:12]}"
        )
    return ""


# --- device identity -------------------------------------------------------------------------


def parse_nv_tegra_release(text: str) -> tuple[int, str]:
    """``# R36 (release), REVISION: 4.3, ...`` -> (36, "36.4.3")."""
    first = text.splitlines()[0] if text else ""
    match = _NV_TEGRA.match(first)
    if not match:
        raise EngineError(
            f"/etc/nv_tegra_release: first line {first!r} is not '# R<major> (release), REVISION: <x.y>, ...'"
        )
    major, revision = match.groups()
    return int(major), f"{major}.{revision}"


def device_identity(
    nv_tegra_release: str | None, dt_model: str | None, machine: str, cpu_model: str | None
) -> str:
    """What an engine is specific to: on Jetson the board (GPU) and L4T release, elsewhere the CPU."""
    if nv_tegra_release is not None:
        _, release = parse_nv_tegra_release(nv_tegra_release)
        board = (dt_model or "unknown Jetson").replace("\x00", "").strip()
        return f"jetson:{board}:L4T R{release}"
    return f"cpu:{machine}:{(cpu_model or 'unknown CPU').strip()}"


# --- trtexec ----------------------------------------------------------------------------------


def trtexec_command(trtexec: str, req: Request, engine_tmp: str, timing_cache: str | None) -> list[str]:
    cmd = [trtexec, f"--onnx={req.onnx}", f"--saveEngine={engine_tmp}"]
    flags = builder_flags(req)
    cmd += [f for f in flags if f.startswith(("--fp16", "--int8"))]
    if req.precision == "int8" and req.calibration_cache:
        cmd.append(f"--calib={req.calibration_cache}")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    cmd += [f for f in flags if not f.startswith(("--fp16", "--int8"))]
    cmd.append("--skipInference")
    return cmd


def trtexec_version(output: str) -> str:
    """``[TensorRT v100300]`` -> ``10.3.0`` (major * 10000 + minor * 100 + patch)."""
    match = _TRT_BANNER.search(output)
    if not match:
        raise EngineError("trtexec printed no '&&&& RUNNING TensorRT.trtexec [TensorRT vNNNNNN]' banner")
    n = int(match.group(1))
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def trtexec_outcome(rc: int, output: str, cmd: Sequence[str]) -> str:
    """Empty when the build passed; else one line saying why (exit code, result line, last error)."""
    result = _TRT_RESULT.findall(output)
    if rc == 0 and result and result[-1] == "PASSED":
        return ""
    errors = [line.strip() for line in output.splitlines() if "[E]" in line or "Error" in line]
    # the first error is the cause (later ones are trtexec's "engine set up failed" summaries)
    if errors:
        said = errors[0] if len(errors) == 1 else f"{errors[0]} ... {errors[-1]}"
    else:
        said = (output.strip().splitlines() or ["no output"])[-1]
    verdict = result[-1] if result else "no &&&& result line"
    return f"trtexec failed (exit {rc}, {verdict}): {said} [{shlex.join(cmd)}]"


def as_dict(p: Plan) -> dict[str, Any]:
    return asdict(p)
