"""The pure plan: what goes into the key, what is refused, how trtexec is called and read."""

from __future__ import annotations

import dataclasses

import pytest
from ansible.module_utils.model_engine_core import (
    EngineError,
    Observed,
    Request,
    device_identity,
    engine_key,
    key_fields,
    native_bf16,
    parse_nv_tegra_release,
    plan,
    resolve_precision,
    trtexec_command,
    trtexec_outcome,
    trtexec_version,
    validate,
)

SHA = "a" * 64
REQ = Request("det", "/m/det.onnx", SHA, (1, 3, 320, 320), "tensorrt", "fp16")
SEEN = Observed(SHA, "10.3.0", "jetson:Orin Nano:L4T R36.4.3")
NV_TEGRA = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"


@pytest.mark.parametrize(
    ("what", "req", "seen"),
    [
        ("onnx bytes", REQ, dataclasses.replace(SEEN, onnx_sha256="b" * 64)),
        ("backend version", REQ, dataclasses.replace(SEEN, backend_version="10.7.0")),
        ("device", REQ, dataclasses.replace(SEEN, device="jetson:AGX Orin:L4T R36.4.3")),
        ("L4T release", REQ, dataclasses.replace(SEEN, device="jetson:Orin Nano:L4T R36.3.0")),
        ("precision", dataclasses.replace(REQ, precision="fp32"), SEEN),
        ("input shape", dataclasses.replace(REQ, input_shape=(1, 3, 640, 640)), SEEN),
        ("builder flags", dataclasses.replace(REQ, builder_flags=("--builderOptimizationLevel=5",)), SEEN),
        ("workspace", dataclasses.replace(REQ, workspace_mb=2048), SEEN),
        ("backend", dataclasses.replace(REQ, backend="openvino", precision="fp32"), SEEN),
    ],
)
def test_every_input_of_an_engine_changes_its_key(what: str, req: Request, seen: Observed) -> None:
    assert engine_key(key_fields(req, seen)) != engine_key(key_fields(REQ, SEEN)), what


def test_the_key_does_not_depend_on_paths_so_releases_share_engines() -> None:
    moved = dataclasses.replace(REQ, onnx="/opt/rvm-edge/releases/2.0.0/models/det.onnx")
    assert plan(moved, SEEN, "/e").key == plan(REQ, SEEN, "/e").key


def test_whole_engine_is_reused_and_anything_else_rebuilt() -> None:
    p = plan(REQ, SEEN, "/e")
    doc = {"key": p.key, "fields": p.key_fields, "engine_sha256": "c" * 64}
    assert plan(REQ, dataclasses.replace(SEEN, key_file=doc, engine_sha256="c" * 64), "/e").action == "reuse"
    corrupt = plan(REQ, dataclasses.replace(SEEN, key_file=doc, engine_sha256="d" * 64), "/e")
    assert corrupt.action == "build" and "corrupt" in corrupt.reason
    no_key = plan(REQ, dataclasses.replace(SEEN, engine_sha256="c" * 64), "/e")
    assert no_key.action == "build" and "interrupted" in no_key.reason


@pytest.mark.parametrize(
    ("req", "needle"),
    [
        (dataclasses.replace(REQ, backend="tflite"), "backend 'tflite' is not supported"),
        (
            dataclasses.replace(REQ, backend="onnxruntime"),
            "precision 'fp16' is not supported by the onnxruntime",
        ),
        (dataclasses.replace(REQ, backend="openvino"), "precision 'fp16' is not supported by the openvino"),
        (dataclasses.replace(REQ, precision="int8"), "needs a calibration cache"),
        (dataclasses.replace(REQ, backend="openvino", precision="int8"), "cannot quantize at build time"),
        (dataclasses.replace(REQ, builder_flags=("--fp16",)), "builder flag '--fp16' is not allowed"),
        (dataclasses.replace(REQ, builder_flags=("--workspace=9",)), None),
        (dataclasses.replace(REQ, sha256="XYZ"), "sha256 must be 64 lowercase hex"),
        (dataclasses.replace(REQ, precision="fp32", calibration_cache="/c"), "only used with precision int8"),
        (
            dataclasses.replace(REQ, backend="onnxruntime", precision="bf16"),
            "not supported by the onnxruntime",
        ),
        (dataclasses.replace(REQ, backend="tensorrt", precision="bf16"), "not supported by the tensorrt"),
    ],
)
def test_refusals_name_what_is_wrong(req: Request, needle: str | None) -> None:
    if needle is None:  # flags the module does not own pass validation; trtexec itself refuses --workspace
        validate(req)
        return
    with pytest.raises(EngineError, match=needle):
        validate(req)


def test_int8_from_a_qdq_model_needs_no_calibration_cache() -> None:
    validate(dataclasses.replace(REQ, precision="int8", model_precision="int8"))


def test_nv_tegra_release_and_device_identity() -> None:
    assert parse_nv_tegra_release(NV_TEGRA) == (36, "36.4.3")
    dt_model = "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00"
    assert device_identity(NV_TEGRA, dt_model, "aarch64", None) == (
        "jetson:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super:L4T R36.4.3"
    )
    assert device_identity(None, None, "x86_64", "Intel Xeon") == "cpu:x86_64:Intel Xeon"
    with pytest.raises(EngineError, match="nv_tegra_release"):
        parse_nv_tegra_release("garbage\n")


def test_trtexec_command_line_uses_tensorrt_10_flags() -> None:
    int8 = dataclasses.replace(REQ, precision="int8", calibration_cache="/m/det.calib", workspace_mb=512)
    cmd = trtexec_command("/usr/src/tensorrt/bin/trtexec", int8, "/e/k/.tmp-det.engine", "/e/t.cache")
    assert cmd == [
        "/usr/src/tensorrt/bin/trtexec",
        "--onnx=/m/det.onnx",
        "--saveEngine=/e/k/.tmp-det.engine",
        "--int8",
        "--calib=/m/det.calib",
        "--timingCacheFile=/e/t.cache",
        "--memPoolSize=workspace:512M",
        "--skipInference",
    ]
    assert not any(a.startswith("--workspace") for a in cmd)


def test_trtexec_output_is_read_from_its_banner_and_result_line() -> None:
    ok = "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] [b10] # t\n[I] x\n&&&& PASSED TensorRT.trtexec [TensorRT v100300] [b10] # t\n"
    assert trtexec_version(ok) == "10.3.0"
    assert trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v100701] # t") == "10.7.1"
    assert trtexec_outcome(0, ok, ["t"]) == ""
    bad = ok.replace("PASSED", "FAILED").replace("[I] x", "[E] Error[10]: no implementation")
    assert "exit 1, FAILED): [E] Error[10]: no implementation" in trtexec_outcome(1, bad, ["t"])
    assert "no &&&& result line" in trtexec_outcome(0, "[I] crashed early\n", ["t"])


# /proc/cpuinfo "flags" lines, cut short: an AMD Zen 4 EPYC (this lab's host), an Ice Lake Xeon
# (AVX-512 without bf16 arithmetic: OpenVINO would emulate bf16 there) and a Sapphire Rapids (AMX)
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
ICELAKE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE = "flags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes bf16\n"
CPU_SEEN = Observed(SHA, "2026.4.1", "cpu:x86_64:AMD EPYC")


@pytest.mark.parametrize(
    ("cpuinfo", "bf16"),
    [(ZEN4, True), (SAPPHIRE, True), (ICELAKE, False), (ARM, False), ("", False), (None, False)],
    ids=["zen4", "sapphire-rapids", "icelake", "arm", "empty", "unreadable"],
)
def test_bf16_means_the_instructions_that_compute_in_it(cpuinfo: str | None, bf16: bool) -> None:
    assert native_bf16(cpuinfo) is bf16


@pytest.mark.parametrize(
    ("backend", "model_precision", "bf16", "expected"),
    [
        ("openvino", "fp32", True, "bf16"),
        ("openvino", "fp32", False, "fp32"),
        ("openvino", "int8", True, "int8"),
        ("tensorrt", "fp32", False, "fp16"),
        ("onnxruntime", "fp32", True, "fp32"),
    ],
)
def test_auto_picks_the_precision_for_this_device(
    backend: str, model_precision: str, bf16: bool, expected: str
) -> None:
    req = dataclasses.replace(REQ, backend=backend, precision="auto", model_precision=model_precision)
    resolved, why = resolve_precision(req, bf16)
    assert resolved.precision == expected and why.startswith(
        f"auto: {expected}" if expected != "int8" else "auto"
    )
    validate(resolved, bf16)


def test_auto_on_openvino_is_bf16_or_fp32_in_the_key_and_shares_the_fp32_engine() -> None:
    """Never one engine for both: the key names the precision chosen. Without bf16 the engine is the
    fp32 engine, so it is the same key as fp32 asked by name (one build for both settings)."""
    auto = dataclasses.replace(REQ, backend="openvino", precision="auto")
    with_bf16, why = resolve_precision(auto, bf16=True)
    without, why_not = resolve_precision(auto, bf16=False)
    assert "has bf16 instructions" in why and "has no bf16 instructions" in why_not
    key_bf16 = plan(with_bf16, CPU_SEEN, "/e")
    key_fp32 = plan(without, CPU_SEEN, "/e")
    assert key_bf16.key_fields["precision"] == "bf16" and key_fp32.key_fields["precision"] == "fp32"
    assert key_bf16.key_fields["builder_flags"] == ["INFERENCE_PRECISION_HINT=bf16"]
    assert key_bf16.key != key_fp32.key
    fp32_by_name = dataclasses.replace(REQ, backend="openvino", precision="fp32")
    assert plan(fp32_by_name, CPU_SEEN, "/e").key == key_fp32.key


def test_bf16_by_name_on_a_cpu_without_bf16_is_refused_not_quietly_changed() -> None:
    req = dataclasses.replace(REQ, backend="openvino", precision="bf16")
    assert resolve_precision(req, bf16=False)[0].precision == "bf16"
    with pytest.raises(EngineError, match=r"needs a CPU with bf16 instructions .* ask for auto"):
        validate(req, bf16=False)
    validate(req, bf16=True)
