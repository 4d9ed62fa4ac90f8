"""Ansible module model_engine: build (or reuse) this device's inference engine for one ONNX model.

The decision lives in module_utils/model_engine_core.py and does no I/O; this file reads the host
(ONNX sha256, backend version, device identity, the key directory), runs the builder (trtexec, or
the worker inside the release venv for ONNX Runtime and OpenVINO) and commits the result with
atomic renames, so a failed or interrupted build never leaves a half-written engine where a good
one was expected.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_engine
short_description: Build a device-specific inference engine from an ONNX model, keyed so it is never rebuilt needlessly
description:
  - Computes the engine key, the sha256 of everything the engine depends on - the ONNX file's sha256,
    I(backend), the backend library's version (TensorRT's read from C(trtexec)'s banner, ONNX Runtime's
    and OpenVINO's from the release venv), the device identity (Jetson board and L4T release, or the CPU),
    I(precision), I(input_shape) and the builder flags.
  - The engine lives in C(<engines_dir>/<key>/<name><suffix>) with C(key.json) beside it, which
    records the key's inputs and the engine's sha256. An engine whose key directory holds a matching
    C(key.json) and engine is reused (C(changed=false)); releases with the same model share it.
  - "A build writes a temporary file in the key directory, checks it (trtexec's C(&&&& PASSED) line,
    or loading it with the backend), then renames it into place and writes C(key.json) the same way.
    A build that fails or is interrupted leaves any existing engine untouched; leftovers are removed
    by the next run. The builder's output goes to C(<key dir>/build.log) while it runs (progress:
    C(tail -f) it)."
  - "Refuses, naming the file or value, before anything changes: an ONNX file whose sha256 is not
    I(sha256); an ONNX whose input shape is not I(input_shape); a precision the backend cannot build
    (INT8 from a float model without I(calibration_cache)); an unknown backend."
  - I(state=verified) builds nothing and fails unless the engine for the key exists and matches its C(key.json).
options:
  name:
    description: The model's name (from the models manifest); the engine file is named after it.
    type: str
    required: true
  onnx:
    description: Path of the ONNX file on the host.
    type: path
    required: true
  sha256:
    description: The ONNX file's sha256 as the models manifest gives it.
    type: str
    required: true
  input_shape:
    description: The model's input shape as the manifest gives it, for example C([1, 3, 320, 320]).
    type: list
    elements: int
    required: true
  model_precision:
    description: The ONNX model's own precision from the manifest (C(int8) for a QDQ model).
    type: str
    choices: [fp32, fp16, int8]
    default: fp32
  backend:
    description: The inference backend the engine is for (the C(rvm_inference_backend) fact).
    type: str
    required: true
  precision:
    description:
      - The engine's precision. TensorRT fp32/fp16/int8, OpenVINO fp32/bf16/int8, ONNX Runtime fp32/int8.
      - C(auto) picks per device, where the accuracy holds (docs/benchmarks.md, issue 17) - int8 for an
        INT8 (QDQ) model, TensorRT fp16, OpenVINO bf16 on a CPU with bf16 instructions (C(avx512_bf16)
        or C(amx_bf16) in C(/proc/cpuinfo)) and fp32 on any other, ONNX Runtime fp32. The key and the
        result name the precision chosen.
      - OpenVINO bf16 by name on a CPU without those instructions is refused.
    type: str
    default: fp32
  calibration_cache:
    description: TensorRT INT8 calibration cache (trtexec C(--calib)); required for INT8 from a float ONNX.
    type: path
  workspace_mb:
    description: TensorRT builder workspace (trtexec C(--memPoolSize=workspace:<N>M)).
    type: int
    default: 1024
  builder_flags:
    description: Extra trtexec flags (part of the key), for example C(--builderOptimizationLevel=3).
    type: list
    elements: str
    default: []
  engines_dir:
    description: Root of the engine cache; each key has its own directory below it.
    type: path
    default: /var/lib/rvm-edge/engines
  python:
    description:
      - The Python of the release venv (it has ONNX Runtime, and OpenVINO when installed). Builds for
        ONNX Runtime and OpenVINO run there; it also reads the ONNX input shape for every backend.
    type: path
    required: true
  trtexec:
    description: The trtexec binary (TensorRT backend).
    type: path
    default: /usr/src/tensorrt/bin/trtexec
  device_identity:
    description: Override the detected device identity (tests); by default read from
      C(/etc/nv_tegra_release) and the device tree on Jetson, else the CPU model.
    type: str
  timeout_s:
    description: A build running longer than this is stopped and reported as failed.
    type: int
    default: 3600
  state:
    description: C(present) builds when needed; C(verified) only checks the engine is there and whole.
    type: str
    choices: [present, verified]
    default: present
notes:
  - Supports check mode (reports whether a build would run and why) and diff is not supported.
author:
  - rvm-fleet maintainers (@rvm-fleet)
"""

EXAMPLES = r"""
- name: Build the detector's engine
  model_engine:
    name: rvm-lab-yolo11n-320
    onnx: /opt/rvm-edge/releases/1.2.0/models/rvm-lab-yolo11n-320.onnx
    sha256: 002d2d96b7b5e0b2750615fa448216ef536b330528f035c82d3f75201cfd9277
    input_shape: [1, 3, 320, 320]
    backend: "{{ rvm_inference_backend }}"
    precision: fp16
    python: /opt/rvm-edge/releases/1.2.0/venv/bin/python
"""

RETURN = r"""
engine:
  description: Path of the engine file.
  returned: always
  type: str
key:
  description: The engine key (hex sha256).
  returned: always
  type: str
pending:
  description: Whether a real run changes something (a build, or leftovers to remove); same as C(changed) unless the caller overrides that.
  returned: always
  type: bool
action:
  description: C(reuse) or C(build).
  returned: always
  type: str
reason:
  description: One line saying why.
  returned: always
  type: str
size:
  description: Engine size in bytes (when it exists after the run).
  returned: when the engine exists
  type: int
build_s:
  description: Seconds the build took (0 when reused).
  returned: success
  type: float
precision:
  description: The precision the engine has (part of the key); C(auto) resolved for this device.
  returned: always
  type: str
precision_reason:
  description: "How that precision was chosen, for example C(auto: fp32, this CPU has no bf16 instructions ...)."
  returned: always
  type: str
backend_version:
  description: The backend library version that is part of the key.
  returned: always
  type: str
device:
  description: The device identity that is part of the key.
  returned: always
  type: str
"""

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from ansible.module_utils import model_engine_worker
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.model_engine_core import (
    KEY_FILE,
    TRTEXEC_DEFAULT,
    EngineError,
    Observed,
    Plan,
    Request,
    check_onnx,
    device_identity,
    key_document,
    native_bf16,
    plan,
    resolve_precision,
    trtexec_command,
    trtexec_outcome,
    trtexec_version,
    validate,
    verify_recorded,
)

TMP = ".tmp-"


def sha256_file(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def detect_device() -> str:
    cpu = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.lower().startswith(("model name", "hardware")):
            cpu = line.split(":", 1)[1].strip()
            break
    return device_identity(
        _read("/etc/nv_tegra_release"), _read("/proc/device-tree/model"), platform.machine(), cpu
    )


class Worker:
    """Runs model_engine_worker.py inside the release venv's Python."""

    def __init__(self, python: str) -> None:
        self.python = python
        # imported above so AnsiballZ ships it; get_source works for files and for the zip alike
        spec = model_engine_worker.__spec__
        source = spec.loader.get_source(spec.name) if spec and spec.loader else None  # type: ignore[attr-defined]
        if source is None:
            raise EngineError("model_engine_worker.py is missing from module_utils")
        self.source = source

    def __call__(self, *args: str, log: str | None = None, timeout: int = 600) -> dict[str, Any]:
        if not os.access(self.python, os.X_OK):
            raise EngineError(f"python {self.python} is not an executable (the release venv's bin/python)")
        cmd = [self.python, "-c", self.source, *args]
        rc, out, err = _run(cmd, log, timeout)
        if rc != 0:
            tail = (err or out).strip().splitlines()[-1:] or ["no output"]
            raise EngineError(
                f"{args[0]} {' '.join(args[1:2])} failed in {self.python} (exit {rc}): {tail[0]}"
            )
        return json.loads(out.strip().splitlines()[-1])


def _run(cmd: list[str], log: str | None, timeout: int) -> tuple[int, str, str]:
    """Run a builder; with ``log`` its output also streams into that file while it runs (progress)."""
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if log is None:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        return done.returncode, done.stdout, done.stderr
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            sink.flush()
            lines.append(line)
            if time.monotonic() > deadline:
                proc.kill()
                break
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if time.monotonic() > deadline:
            raise EngineError(f"build stopped after timeout_s={timeout} s: {cmd[0]} (see {log})")
    return rc, "".join(lines), ""


def backend_version(backend: str, worker: Worker, trtexec: str) -> str:
    if backend != "tensorrt":
        return str(worker("version", backend)["version"])
    if not os.access(trtexec, os.X_OK):
        raise EngineError(
            f"trtexec {trtexec} not found: install TensorRT (the jetson_runtime role) or set the trtexec option"
        )
    _rc, out, err = _run([trtexec, "--help"], None, 60)
    return trtexec_version(out + err)


def read_key_dir(p_engine: str, directory: str) -> tuple[dict[str, Any] | None, str | None]:
    recorded = None
    key_path = os.path.join(directory, KEY_FILE)
    if os.path.isfile(key_path):
        try:
            recorded = json.loads(Path(key_path).read_text())
        except (OSError, ValueError):
            recorded = {"key": "unreadable"}
    engine_sha = sha256_file(p_engine) if os.path.isfile(p_engine) else None
    return recorded, engine_sha


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), f"{TMP}{os.getpid()}-{os.path.basename(path)}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build(
    module: AnsibleModule, req: Request, p: Plan, worker: Worker, engines_dir: str
) -> tuple[int, float]:
    """Build into a temp file, check it, rename it into place, then write key.json. Returns (size, seconds)."""
    os.makedirs(p.directory, mode=0o755, exist_ok=True)
    for leftover in os.listdir(p.directory):
        if leftover.startswith(TMP):
            os.unlink(os.path.join(p.directory, leftover))
    suffix = p.engine[len(p.directory) + 1 + len(req.name) :]
    tmp = os.path.join(p.directory, f"{TMP}{os.getpid()}-{req.name}{suffix}")
    log = os.path.join(p.directory, "build.log")
    timeout = module.params["timeout_s"]
    started = time.monotonic()
    try:
        if req.backend == "tensorrt":
            cache = os.path.join(engines_dir, f"trt-timing-{p.key_fields['backend_version']}.cache")
            cmd = trtexec_command(module.params["trtexec"], req, tmp, cache)
            rc, out, _ = _run(cmd, log, timeout)
            failure = trtexec_outcome(rc, out, cmd)
            if failure:
                raise EngineError(f"{req.name}: {failure} (log: {log})")
            if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
                raise EngineError(f"{req.name}: trtexec reported PASSED but wrote no engine to {tmp}")
        else:
            hint = p.key_fields["builder_flags"][0].split("=", 1)[1] if req.backend == "openvino" else ""
            built = worker(
                "build", req.backend, req.onnx, tmp, *([hint] if hint else []), log=log, timeout=timeout
            )
            # OpenVINO takes a precision hint it cannot honour without a word; the key must not lie
            if hint and built.get("precision") != hint:
                raise EngineError(
                    f"{req.name}: OpenVINO compiled it at {built.get('precision')}, not the {hint} asked "
                    f"(precision {req.precision}); ask for auto or fp32 on this CPU"
                )
            loaded = worker("load", req.backend, tmp)
            if req.backend == "openvino" and tuple(loaded["shape"]) != req.input_shape:
                raise EngineError(
                    f"{req.name}: built engine takes {loaded['shape']}, expected {list(req.input_shape)}"
                )
        seconds = time.monotonic() - started
        _fsync_path(tmp)
        engine_sha = sha256_file(tmp)
        size = os.path.getsize(tmp)
        os.replace(tmp, p.engine)
        doc = key_document(p, engine_sha, size, seconds, req.onnx)
        _write_atomic(
            os.path.join(p.directory, KEY_FILE), (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
        )
        _fsync_path(p.directory)
        return size, seconds
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "onnx": {"type": "path", "required": True},
            "sha256": {"type": "str", "required": True},
            "input_shape": {"type": "list", "elements": "int", "required": True},
            "model_precision": {"type": "str", "choices": ["fp32", "fp16", "int8"], "default": "fp32"},
            "backend": {"type": "str", "required": True},
            "precision": {"type": "str", "default": "fp32"},
            "calibration_cache": {"type": "path"},
            "workspace_mb": {"type": "int", "default": 1024},
            "builder_flags": {"type": "list", "elements": "str", "default": []},
            "engines_dir": {"type": "path", "default": "/var/lib/rvm-edge/engines"},
            "python": {"type": "path", "required": True},
            "trtexec": {"type": "path", "default": TRTEXEC_DEFAULT},
            "device_identity": {"type": "str"},
            "timeout_s": {"type": "int", "default": 3600},
            "state": {"type": "str", "choices": ["present", "verified"], "default": "present"},
        },
        supports_check_mode=True,
    )
    params = module.params
    req = Request(
        name=params["name"],
        onnx=params["onnx"],
        sha256=params["sha256"],
        input_shape=tuple(params["input_shape"]),
        backend=params["backend"],
        precision=params["precision"],
        model_precision=params["model_precision"],
        calibration_cache=params["calibration_cache"],
        workspace_mb=params["workspace_mb"],
        builder_flags=tuple(params["builder_flags"]),
    )
    engines_dir = params["engines_dir"]
    # pending: this run (or, in check mode, a real run) changes something; callers that force
    # check mode to plan read it when they override changed
    result: dict[str, Any] = {"changed": False, "pending": False}
    try:
        bf16 = native_bf16(_read("/proc/cpuinfo"))
        req, precision_reason = resolve_precision(req, bf16)
        result.update(precision=req.precision, precision_reason=precision_reason)
        validate(req, bf16)
        if not os.path.isfile(req.onnx):
            raise EngineError(f"{req.onnx}: ONNX file of model {req.name} not found")
        if req.calibration_cache and not os.path.isfile(req.calibration_cache):
            raise EngineError(f"{req.calibration_cache}: calibration cache of model {req.name} not found")
        onnx_sha = sha256_file(req.onnx)
        check_onnx(req, onnx_sha)
        worker = Worker(params["python"])
        seen = Observed(
            onnx_sha256=onnx_sha,
            backend_version=backend_version(req.backend, worker, params["trtexec"]),
            device=params["device_identity"] or detect_device(),
        )
        probe = plan(req, seen, engines_dir)
        recorded, engine_sha = read_key_dir(probe.engine, probe.directory)
        seen = Observed(seen.onnx_sha256, seen.backend_version, seen.device, recorded, engine_sha)
        p = plan(req, seen, engines_dir)
        result.update(
            engine=p.engine,
            key=p.key,
            key_fields=p.key_fields,
            action=p.action,
            reason=p.reason,
            backend_version=seen.backend_version,
            device=seen.device,
            build_s=0.0,
        )
        if params["state"] == "verified":
            problem = verify_recorded(p.engine, recorded, engine_sha, p.key)
            if problem:
                module.fail_json(msg=problem, **result)
            result["size"] = os.path.getsize(p.engine)
            result["msg"] = f"{req.name}: {p.reason}"
            module.exit_json(**result)
        if p.action == "reuse":
            result["size"] = os.path.getsize(p.engine)
            result["msg"] = f"{req.name}: {p.reason}"
            leftovers = [n for n in os.listdir(p.directory) if n.startswith(TMP)]
            if leftovers:  # an earlier run died after its engine was in place
                result["changed"] = result["pending"] = True
                result["msg"] += f"; removed leftovers of an interrupted run: {', '.join(sorted(leftovers))}"
                if not module.check_mode:
                    for name in leftovers:
                        os.unlink(os.path.join(p.directory, name))
            module.exit_json(**result)
        result["changed"] = result["pending"] = True
        result["steps"] = p.steps
        if module.check_mode:
            result["msg"] = f"{req.name}: would build: {p.reason}"
            module.exit_json(**result)
        # the ONNX's own input shape is checked before any build (a key hit proves an earlier check)
        check_onnx(req, onnx_sha, worker("shape", req.onnx)["shape"])
        size, seconds = build(module, req, p, worker, engines_dir)
        result.update(size=size, build_s=round(seconds, 3), log=os.path.join(p.directory, "build.log"))
        result["msg"] = f"{req.name}: built {p.engine} ({size} bytes in {seconds:.1f} s): {p.reason}"
    except EngineError as exc:
        result["changed"] = False
        module.fail_json(msg=str(exc), **result)
    except OSError as exc:
        result["changed"] = False
        module.fail_json(msg=f"{req.name}: {exc.strerror or exc} ({exc.filename or engines_dir})", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
