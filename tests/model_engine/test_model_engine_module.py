"""model_engine on a host: real ONNX Runtime and OpenVINO builds of the lab detector, TensorRT against
the trtexec LAB STAND-IN, reuse without rebuild, check mode, refusals that change nothing, corrupt engines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import model_engine
import pytest
from ansible.module_utils.model_engine_core import native_bf16
from model_engine_helpers import (
    APP_PYTHON,
    DETECTOR,
    DETECTOR_INT8,
    JETSON,
    LAB_MODELS,
    ModuleRun,
    model_args,
    tree,
)

HERE_BF16 = native_bf16(Path("/proc/cpuinfo").read_text())
NO_BF16_CPU = "processor\t: 0\nmodel name\t: Intel Xeon (Ice Lake)\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"


def _built(result: dict[str, Any]) -> Path:
    assert result["rc"] == 0 and not result.get("failed"), result.get("msg")
    return Path(result["engine"])


NEEDS_BF16 = pytest.mark.skipif(
    not HERE_BF16, reason="this CPU has no bf16 instructions (refusal tested below)"
)


@pytest.mark.parametrize(
    ("backend", "precision", "suffix", "built_at"),
    [
        ("onnxruntime", "fp32", ".ort.onnx", "fp32"),
        ("openvino", "fp32", ".blob", "fp32"),
        pytest.param("openvino", "bf16", ".blob", "bf16", marks=NEEDS_BF16),
        ("openvino", "auto", ".blob", "bf16" if HERE_BF16 else "fp32"),
    ],
)
def test_cpu_engine_is_built_for_real_then_reused_without_rebuild(
    run_module: ModuleRun, engines: Path, backend: str, precision: str, suffix: str, built_at: str
) -> None:
    args = model_args(DETECTOR, engines, backend=backend, precision=precision)
    first = run_module(args)
    engine = _built(first)
    assert first["changed"] is True and first["action"] == "build"
    assert engine.name == f"rvm-lab-yolo11n-320{suffix}" and engine.parent.name == first["key"]
    assert first["size"] == engine.stat().st_size > 100_000 and first["build_s"] > 0
    key_doc = json.loads((engine.parent / "key.json").read_text())
    assert key_doc["key"] == first["key"] and key_doc["fields"]["backend"] == backend
    # the precision the engine has, in the result and the key (OpenVINO's own report was checked)
    assert first["precision"] == key_doc["fields"]["precision"] == built_at, first["precision_reason"]
    assert key_doc["fields"]["onnx_sha256"] == DETECTOR["sha256"] and key_doc["fields"]["device"].startswith(
        "cpu:"
    )
    assert first["backend_version"] == key_doc["fields"]["backend_version"] != ""
    assert "build.log" in os.listdir(engine.parent)

    before = (engine.stat().st_ino, engine.stat().st_mtime_ns)
    again = run_module(args)
    assert again["changed"] is False and again["action"] == "reuse" and again["engine"] == str(engine)
    assert (engine.stat().st_ino, engine.stat().st_mtime_ns) == before, "an unchanged key must not rebuild"
    assert run_module({**args, "state": "verified"})["rc"] == 0


def test_engines_are_shared_across_releases_and_a_new_device_gets_its_own(
    run_module: ModuleRun, engines: Path, tmp_path: Path
) -> None:
    first = run_module(model_args(DETECTOR, engines))
    release2 = tmp_path / "releases" / "2.0.0" / "models"
    release2.mkdir(parents=True)
    (release2 / DETECTOR["file"]).write_bytes((LAB_MODELS / DETECTOR["file"]).read_bytes())
    other_release = run_module({**model_args(DETECTOR, engines), "onnx": str(release2 / DETECTOR["file"])})
    assert other_release["changed"] is False and other_release["engine"] == first["engine"]
    moved = run_module(model_args(DETECTOR, engines, device_identity="cpu:x86_64:another CPU"))
    assert moved["changed"] is True and moved["key"] != first["key"]
    assert Path(first["engine"]).is_file(), "the engine of the other key stays"


def test_check_mode_reports_the_build_and_writes_nothing(run_module: ModuleRun, engines: Path) -> None:
    result = run_module(model_args(DETECTOR, engines, backend="openvino"), check=True)
    assert result["changed"] is True and result["action"] == "build" and "would build" in result["msg"]
    assert any("move it into place" in s for s in result["steps"])
    assert tree(engines) == {}


def test_tensorrt_through_the_trtexec_stand_in(
    run_module: ModuleRun, engines: Path, _calls_log: Path
) -> None:
    args = model_args(DETECTOR, engines, backend="tensorrt", precision="fp16", device_identity=JETSON)
    result = run_module(args)
    engine = _built(result)
    assert result["backend_version"] == "10.3.0" and engine.suffix == ".engine"
    assert engine.read_bytes().startswith(b"LABTRT01")
    calls = [json.loads(line)["argv"] for line in _calls_log.read_text().splitlines()]
    build = next(c for c in calls if any(a.startswith("--saveEngine=") for a in c))
    assert "--fp16" in build and "--skipInference" in build and "--memPoolSize=workspace:1024M" in build
    cache = next(a.split("=", 1)[1] for a in build if a.startswith("--timingCacheFile="))
    assert Path(cache).is_file() and Path(cache).parent == engines
    assert "&&&& PASSED" in (engine.parent / "build.log").read_text()
    assert run_module(args)["changed"] is False


def test_int8_tensorrt_passes_the_calibration_cache(
    run_module: ModuleRun, engines: Path, tmp_path: Path, _calls_log: Path
) -> None:
    calib = tmp_path / "det.calib"
    calib.write_text("TRT-100300-EntropyCalibration2\n")
    args = model_args(
        DETECTOR,
        engines,
        backend="tensorrt",
        precision="int8",
        calibration_cache=str(calib),
        device_identity=JETSON,
    )
    _built(run_module(args))
    build = [json.loads(line)["argv"] for line in _calls_log.read_text().splitlines()][-1]
    assert "--int8" in build and f"--calib={calib}" in build


def test_a_failed_build_leaves_the_previous_engine(
    run_module: ModuleRun, engines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = model_args(DETECTOR, engines, backend="tensorrt", device_identity=JETSON)
    engine = _built(run_module(args))
    good = tree(engines)
    engine.write_bytes(b"LABTRT01 flipped bits")  # corrupt it, so the next run must rebuild
    corrupt = tree(engines)
    monkeypatch.setenv("LAB_TRTEXEC_FAIL", "1")
    failed = run_module(args)
    assert failed["rc"] == 1 and failed["changed"] is False
    assert (
        "trtexec failed (exit 1, FAILED)" in failed["msg"]
        and "Could not find any implementation" in failed["msg"]
    )
    assert tree(engines) == corrupt, "a failed build must not touch what is there"
    monkeypatch.delenv("LAB_TRTEXEC_FAIL")
    assert run_module(args)["changed"] is True and tree(engines).keys() == good.keys()


def test_a_corrupt_engine_is_refused_by_verify_and_rebuilt_by_present(
    run_module: ModuleRun, engines: Path
) -> None:
    args = model_args(DETECTOR, engines)
    engine = _built(run_module(args))
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    refused = run_module({**args, "state": "verified"})
    assert refused["rc"] == 1 and "corrupt engine" in refused["msg"] and str(engine) in refused["msg"]
    rebuilt = run_module(args)
    assert rebuilt["changed"] is True and "is corrupt" in rebuilt["reason"]
    assert run_module({**args, "state": "verified"})["rc"] == 0


def test_verify_refuses_a_missing_engine(run_module: ModuleRun, engines: Path) -> None:
    refused = run_module({**model_args(DETECTOR, engines), "state": "verified"})
    assert refused["rc"] == 1 and "engine missing" in refused["msg"] and tree(engines) == {}


def test_a_qdq_int8_model_builds_with_onnxruntime(run_module: ModuleRun, engines: Path) -> None:
    result = run_module(model_args(DETECTOR_INT8, engines, precision="int8"))
    assert _built(result).is_file() and result["key_fields"]["precision"] == "int8"


def _refused(run_module: ModuleRun, engines: Path, args: dict[str, Any]) -> str:
    result = run_module(args)
    assert result["rc"] == 1 and result["changed"] is False
    assert tree(engines) == {}, "a refused request must change nothing"
    return str(result["msg"])


def test_onnx_not_matching_the_manifest_sha256_is_refused(run_module: ModuleRun, engines: Path) -> None:
    msg = _refused(run_module, engines, model_args(DETECTOR, engines, sha256="0" * 64))
    assert (
        f"{LAB_MODELS / DETECTOR['file']}: sha256 is {DETECTOR['sha256']} but the manifest says {'0' * 64}"
        in msg
    )


def test_input_shape_not_matching_the_manifest_is_refused(run_module: ModuleRun, engines: Path) -> None:
    msg = _refused(run_module, engines, model_args(DETECTOR, engines, input_shape=[1, 3, 640, 640]))
    assert "input shape is [1, 3, 320, 320] but the manifest says [1, 3, 640, 640]" in msg


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            {"backend": "tensorrt", "precision": "int8"},
            "INT8 TensorRT engine from a fp32 ONNX needs a calibration cache",
        ),
        (
            {"backend": "tensorrt", "precision": "int8", "calibration_cache": "/nonexistent.calib"},
            "/nonexistent.calib: calibration cache",
        ),
        (
            {"backend": "onnxruntime", "precision": "fp16"},
            "precision 'fp16' is not supported by the onnxruntime backend",
        ),
        ({"backend": "coreml"}, "backend 'coreml' is not supported"),
        (
            {"backend": "tensorrt", "trtexec": "/nonexistent/trtexec"},
            "trtexec /nonexistent/trtexec not found",
        ),
        (
            {"onnx": "/nonexistent/model.onnx"},
            "/nonexistent/model.onnx: ONNX file of model rvm-lab-yolo11n-320 not found",
        ),
        (
            {"python": "/nonexistent/venv/bin/python"},
            "python /nonexistent/venv/bin/python is not an executable",
        ),
    ],
)
def test_bad_requests_are_refused_naming_what_is_wrong(
    run_module: ModuleRun, engines: Path, extra: dict[str, Any], needle: str
) -> None:
    assert needle in _refused(
        run_module, engines, model_args(DETECTOR, engines, device_identity=JETSON, **extra)
    )


def test_on_a_cpu_without_bf16_auto_is_the_fp32_engine_and_bf16_by_name_is_refused(
    run_module: ModuleRun, engines: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device whose /proc/cpuinfo names no bf16 instructions (read through the module's reader)."""
    real_read = model_engine._read
    monkeypatch.setattr(
        model_engine, "_read", lambda p: NO_BF16_CPU if p == "/proc/cpuinfo" else real_read(p)
    )
    auto = run_module(model_args(DETECTOR, engines, backend="openvino", precision="auto"), check=True)
    fp32 = run_module(model_args(DETECTOR, engines, backend="openvino", precision="fp32"), check=True)
    assert auto["precision"] == auto["key_fields"]["precision"] == "fp32"
    assert "no bf16 instructions" in auto["precision_reason"] and auto["key"] == fp32["key"]
    msg = _refused(run_module, engines, model_args(DETECTOR, engines, backend="openvino", precision="bf16"))
    assert "precision 'bf16' needs a CPU with bf16 instructions" in msg and "ask for auto" in msg


APP_RESOLVE = """
import json, sys
from rvm_edge.backends.openvino import resolve_precision
print(json.dumps([resolve_precision("auto", c) for c in json.loads(sys.argv[1])]))
"""


def test_rvm_edge_runs_the_detector_at_the_precision_the_engine_was_built_at() -> None:
    """rvm-edge compiles the OpenVINO detector itself (models.precision auto): the same CPUs must get
    bf16 from it as from the module, or the engine's key would name a precision the device does not run."""
    import subprocess

    from ansible.module_utils.model_engine_core import Request, resolve_precision

    cpus = [
        NO_BF16_CPU,
        "flags\t\t: avx512f avx512_bf16\n",
        "flags\t\t: amx_bf16\n",
        "Features\t: bf16\n",
        "",
    ]
    done = subprocess.run(
        [str(APP_PYTHON), "-c", APP_RESOLVE, json.dumps(cpus)], capture_output=True, text=True, check=True
    )
    req = Request("d", "/d.onnx", "a" * 64, (1, 3, 320, 320), "openvino", "auto")
    module = [resolve_precision(req, native_bf16(c))[0].precision for c in cpus]
    assert [{"bf16": "bf16", "fp32": "f32"}[m] for m in module] == json.loads(done.stdout)
    assert module == ["fp32", "bf16", "bf16", "fp32", "fp32"]


def test_the_worker_runs_in_the_given_venv() -> None:
    assert APP_PYTHON.is_file()


APP_CHECK = """
import sys
from pathlib import Path
from rvm_edge.engines import EngineMismatch, verify_engine
from rvm_edge.manifest import load_manifest
model = load_manifest(sys.argv[2]).by_name(sys.argv[3])
try:
    print(verify_engine(Path(sys.argv[1]), model, sys.argv[4]).key)
except EngineMismatch as exc:
    print(exc)
    sys.exit(3)
"""


def test_rvm_edge_accepts_the_modules_engine_and_refuses_it_for_another_model(
    run_module: ModuleRun, engines: Path
) -> None:
    import subprocess

    result = run_module(model_args(DETECTOR, engines))
    engine = _built(result)
    manifest = str(LAB_MODELS / "manifest.json")

    def app(name: str) -> subprocess.CompletedProcess[str]:
        argv = [str(APP_PYTHON), "-c", APP_CHECK, str(engine), manifest, name, "onnxruntime"]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)

    ok = app(DETECTOR["name"])
    assert ok.returncode == 0 and ok.stdout.strip() == result["key"], ok.stdout + ok.stderr
    other = app(DETECTOR_INT8["name"])
    assert other.returncode == 3 and "not the engine of model rvm-lab-yolo11n-320-int8" in other.stdout
