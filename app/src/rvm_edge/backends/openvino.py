"""OpenVINO on the CPU (x86 devices and the lab), with its compiled-model cache kept on disk.

Compiling a large model (the SAM2 encoder) takes minutes; with ``CACHE_DIR`` the next start
takes under a second, so the cache directory must survive restarts (it lives under the state dir).

The precision is always named to OpenVINO. Left to itself its CPU plugin runs bf16 on a CPU with
bf16 instructions and f32 on others, by rules that have changed between its releases; a bf16 hint is
taken on any AVX-512 CPU (emulated where the instructions are missing) and dropped without a word
elsewhere. So the same config could run differently on two devices, or after an upgrade, unseen.
``auto`` (the detector's default) asks for bf16 only where the CPU computes in bf16 itself (the lab
detector keeps its accuracy there and costs about a third less CPU, issue 17), f32 everywhere else,
and :meth:`OpenVinoBackend.describe` reports the precision OpenVINO really took.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from rvm_edge.backends.base import Backend, BackendError

AUTO = "auto"
# The x86 flags of the instructions that compute in bf16; the model_engine module reads the same
# ones when it builds the engine (tests/model_engine checks that both choose alike).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (or the one ``cpuinfo``, a /proc/cpuinfo text, describes) computes in bf16."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:  # not Linux: nothing says so, f32 is the safe answer
            cpuinfo = ""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return not BF16_FLAGS.isdisjoint(flags.partition(":")[2].split())


def resolve_precision(precision: str, cpuinfo: str | None = None) -> str:
    """The hint OpenVINO is given: ``auto`` is bf16 on a CPU with bf16 instructions, else f32."""
    if precision != AUTO:
        return precision
    return "bf16" if native_bf16(cpuinfo) else "f32"


def compile_model(
    model_path: Path,
    device: str = "CPU",
    precision: str = "f32",
    cache_dir: Path | None = None,
    threads: int = 0,
    input_size: tuple[int, int] | None = None,
    batch: int = 1,
) -> ov.CompiledModel:
    """Compile with an explicit precision (``auto`` resolved here): OpenVINO's own choice depends
    on the CPU, see the module's docstring."""
    core = ov.Core()
    model: ov.Model | str = str(model_path)
    read = core.read_model(str(model_path))
    shape = read.input(0).get_partial_shape()
    if shape.rank.get_length() == 4:
        dims = list(shape)
        if input_size is not None and not (dims[2].is_static and dims[3].is_static):
            dims[2], dims[3] = ov.Dimension(input_size[0]), ov.Dimension(input_size[1])  # faster kernels
        if dims[0].is_dynamic:  # bounded when batches are wanted, else one frame a call
            dims[0] = ov.Dimension(1, batch) if batch > 1 else ov.Dimension(1)
        if ov.PartialShape(dims) != shape:
            read.reshape({0: ov.PartialShape(dims)})
            model = read
    hint = resolve_precision(precision)
    config: dict[str, str] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache_dir)
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    try:
        return core.compile_model(model, device, config)
    except Exception as exc:  # OpenVINO raises a bare RuntimeError for every kind of failure
        raise BackendError(f"{model_path}: OpenVINO cannot compile it for {device} ({exc})") from exc


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        model_path: Path,
        device: str = "CPU",
        precision: str = AUTO,
        cache_dir: Path | None = None,
        threads: int = 0,
        input_size: tuple[int, int] | None = None,
        batch: int = 1,
        **_: object,
    ) -> None:
        self.compiled = compile_model(model_path, device, precision, cache_dir, threads, input_size, batch)
        shape = self.compiled.input(0).get_partial_shape()
        fixed_chw = all(d.is_static for d in list(shape)[1:])
        if shape.rank.get_length() != 4 or not fixed_chw:
            raise BackendError(f"{model_path}: expected a fixed-size NCHW image input, got {shape}")
        dims = [d.get_length() if d.is_static else 1 for d in shape]
        if shape[0].is_dynamic:
            dims[0] = shape[0].get_max_length() if shape[0].get_max_length() > 0 else 1
        self.max_batch = dims[0]
        self.input_shape = (dims[0], dims[1], dims[2], dims[3])
        self.request = self.compiled.create_infer_request()
        # what OpenVINO really runs at: it keeps its default when the CPU cannot do the hint
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.asked_precision, self.threads = precision, threads

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        self.request.infer({0: tensor}, share_inputs=True)
        return self.request.get_output_tensor(0).data

    def describe(self) -> dict[str, object]:
        asked = {} if self.asked_precision == self.precision else {"precision_asked": self.asked_precision}
        return {
            **super().describe(),
            "precision": self.precision,
            **asked,
            "threads": self.threads or "one per core",
        }
