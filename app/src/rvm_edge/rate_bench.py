"""``rvm-edge bench --rate FPS --duration S``: what the service costs at a camera's real rate.

The throughput benchmark (``bench.py``) asks how fast a frame can go through. A reverse vending
machine's camera delivers a frame every 0.2-1 s, in a closed cabinet: what matters there is how
much CPU (heat, power) the service burns at that rate. This runs the service's own pipeline
(paced source, detector, decision, SAM2 when on, and the same sinks: the recorder into a
temporary store, metrics, the dashboard's live view) for ``duration`` seconds at ``fps`` and
reports:

- CPU % of one core, user and system apart, for the process; per stage where a stage's own
  thread did the work (inference thread pools count in the process total only);
- wake-ups per second (voluntary context switches of all the process's threads);
- RSS; the same latency percentiles as the throughput benchmark;
- idle: the same process with the models loaded and no frame arriving;
- with SAM2 on, what SAM2 itself costs and the CPU beyond it, which is what issue 17's budget
  ("the encoder's own compute plus <= 5 %") bounds. SAM2's own is the segment thread's CPU plus
  the unattributed CPU (its inference pool's threads): exact when the detector runs on one
  thread (the default: then the detector has no pool). The CPU seconds of one item segmented
  alone (nothing else running in the process) are reported beside it as a cross-check.

A source that cannot keep the asked rate is reported (``slower_than_asked``, late frames), not
averaged away.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from rvm_edge import __version__
from rvm_edge.decision import DecisionConfig
from rvm_edge.detector import Detector
from rvm_edge.messages import Frame
from rvm_edge.pipeline import Pipeline, PipelineConfig
from rvm_edge.segment import Sam2Segmenter
from rvm_edge.sources import FrameSource, ImageFolderSource

MIN_FRAMES = 10  # fewer frames than this at the asked rate cannot give a CPU figure worth reading
MIN_DURATION_S = 5.0
SAMPLE_S = 1.0


class RateError(ValueError):
    """A rate or duration that cannot be measured; the message says what is needed."""


def check_rate(fps: float, duration_s: float) -> None:
    if not fps > 0:
        raise RateError(f"--rate {fps:g}: the frame rate must be above 0 frames per second")
    if duration_s < MIN_DURATION_S or fps * duration_s < MIN_FRAMES:
        raise RateError(
            f"--duration {duration_s:g} at --rate {fps:g}: too short to measure; needs at least "
            f"{MIN_DURATION_S:g} s and {MIN_FRAMES} frames (e.g. --duration {max(MIN_DURATION_S, MIN_FRAMES / fps):g})"
        )


def context_switches() -> tuple[int, int]:
    """(voluntary, involuntary) context switches of every thread of this process so far.

    A voluntary switch is a thread going to sleep, so each one is later a wake-up."""
    voluntary = involuntary = 0
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary += int(line.split()[1])
    return voluntary, involuntary


class _NoFrames(FrameSource):
    """A camera that delivers nothing (the intake is idle) until stopped."""

    name = "idle"

    def __iter__(self) -> Iterator[Frame]:
        self._stop.wait()
        yield from ()


@dataclass
class _Window:
    """CPU and switches between two moments, as percentages of one core and per second."""

    seconds: float
    user_pct: float
    system_pct: float
    wakeups_per_s: float
    involuntary_per_s: float

    @property
    def total_pct(self) -> float:
        return self.user_pct + self.system_pct


class _Meter:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.mark()

    def mark(self) -> None:
        self.t = time.monotonic()
        self.cpu = self.proc.cpu_times()
        self.switches = context_switches()

    def window(self, switches: bool = True) -> _Window:
        """Since the last mark; marks now. ``switches=False`` skips reading every thread's status
        (about 1 ms of CPU here, which the once-a-second CPU series would add to what it measures)."""
        t, cpu = time.monotonic(), self.proc.cpu_times()
        sw = context_switches() if switches else self.switches
        dt = max(t - self.t, 1e-9)
        w = _Window(
            dt,
            100.0 * (cpu.user - self.cpu.user) / dt,
            100.0 * (cpu.system - self.cpu.system) / dt,
            (sw[0] - self.switches[0]) / dt,
            (sw[1] - self.switches[1]) / dt,
        )
        self.t, self.cpu, self.switches = t, cpu, sw
        return w


def sam2_cpu_alone(segmenter: Sam2Segmenter, frames_dir: Path, runs: int = 2) -> float:
    """CPU seconds (every thread of the process) one SAM2 item takes with nothing else running.

    The median of ``runs`` items on the folder's first image with a box over its middle half:
    the encoder's cost does not depend on the box, and the decoder's is small beside it."""
    import cv2

    source = ImageFolderSource(frames_dir)
    image = cv2.imread(str(source.files[0]), cv2.IMREAD_COLOR)
    if image is None:
        raise RateError(f"{source.files[0]}: unreadable, cannot measure SAM2 on it")
    h, w = image.shape[:2]
    box = (w / 4, h / 4, 3 * w / 4, 3 * h / 4)
    costs = []
    for _ in range(runs):
        before = time.process_time()  # user + system of every thread, to the nanosecond
        segmenter.segment(image, [box])
        costs.append(time.process_time() - before)
    return float(np.median(costs))


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _run(
    pipe: Pipeline, duration_s: float, meter: _Meter, series: list[dict[str, float]] | None
) -> tuple[_Window, dict[str, float]]:
    """Run the started pipeline for ``duration_s``; the whole window and the stage CPU in it."""
    stop = threading.Event()
    cpu0 = dict(pipe.stats.cpu_s)
    meter.mark()
    start = meter.t
    total = _Meter()
    deadline = start + duration_s
    while (left := deadline - time.monotonic()) > 0:
        stop.wait(min(SAMPLE_S, left))  # the sampling period, not a synchronisation
        if series is not None:
            w = meter.window(switches=False)
            series.append(
                {"t_s": round(meter.t - start, 2), "user_pct": w.user_pct, "system_pct": w.system_pct}
            )
    whole = total.window()
    stages = {k: v - cpu0.get(k, 0.0) for k, v in pipe.stats.cpu_s.items()}
    return whole, stages


def run_at_rate(
    detector: Detector,
    segmenter: Sam2Segmenter | None,
    frames_dir: Path,
    decision: DecisionConfig,
    fps: float,
    duration_s: float,
    idle_s: float = 5.0,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """The report (JSON-ready) and the CPU time series (one sample a second)."""
    from rvm_edge.service.dashboard import LiveView
    from rvm_edge.service.deposit import ModelInfo
    from rvm_edge.service.metrics import Metrics
    from rvm_edge.service.recorder import Recorded, Recorder
    from rvm_edge.service.store import Store

    check_rate(fps, duration_s)
    meter = _Meter()
    commit_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rvm-edge-rate-") as tmp:
        store = Store(Path(tmp))
        store.start_checkpointer()
        metrics, live = Metrics(lambda: {}, __version__), LiveView()

        def timings(event: Recorded) -> None:
            commit_ms.append(event.timings_ms["commit_ms"])

        recorder = Recorder(
            store,
            "bench",
            ModelInfo("bench", "0", "", detector.backend.name),
            5 * 1024 * 1024,
            listeners=[metrics.recorded, live.recorded, timings],
        )
        sinks = [recorder, metrics, live]
        config = PipelineConfig(segment=segmenter is not None, warmup_runs=2)
        # idle first: models loaded and warm, the same threads, no frame arriving
        idle_pipe = Pipeline(_NoFrames(), detector, decision, segmenter, sinks, config)
        idle_pipe.start()
        idle, _ = _run(idle_pipe, idle_s, meter, None)
        idle_pipe.stop()
        sam2_alone = sam2_cpu_alone(segmenter, frames_dir) if segmenter is not None else None
        source = ImageFolderSource(frames_dir, loop=True, fps=fps)
        pipe = Pipeline(source, detector, decision, segmenter, sinks, replace(config, warmup_runs=0))
        pipe.start()
        series: list[dict[str, float]] = []
        whole, stages = _run(pipe, duration_s, meter, series)
        pipe.stop()
        rss = psutil.Process().memory_info().rss / 2**20
        store.close()
    s = pipe.stats
    achieved = s.frames_read / whole.seconds
    items = max(s.frames_processed, 1)
    timing = {k: list(v) for k, v in s.timings.items()}
    report: dict[str, Any] = {
        "mode": "rate",
        "asked_fps": fps,
        "achieved_fps": round(achieved, 3),
        "slower_than_asked": source.stats.late > 0 or achieved < 0.95 * fps,
        "source_late_frames": source.stats.late,
        "duration_s": round(whole.seconds, 2),
        "frames_processed": s.frames_processed,
        "frames_dropped": s.frames_dropped,
        "deposits_recorded": recorder.recorded,
        "segmented": s.segmented,
        "backend": detector.backend.describe(),
        "sam2": segmenter is not None,
        "cpu_pct_of_one_core": {
            "user": round(whole.user_pct, 2),
            "system": round(whole.system_pct, 2),
            "total": round(whole.total_pct, 2),
        },
        "cpu_ms_per_item": round(10.0 * whole.total_pct * whole.seconds / items, 2),
        "cpu_pct_per_stage_thread": {
            k: round(100.0 * v / whole.seconds, 2) for k, v in sorted(stages.items())
        },
        "cpu_pct_unattributed": round(whole.total_pct - 100.0 * sum(stages.values()) / whole.seconds, 2),
        "wakeups_per_s": round(whole.wakeups_per_s, 1),
        "involuntary_switches_per_s": round(whole.involuntary_per_s, 1),
        "idle": {
            "seconds": round(idle.seconds, 2),
            "cpu_pct_of_one_core": round(idle.total_pct, 2),
            "wakeups_per_s": round(idle.wakeups_per_s, 1),
        },
        "rss_mb": round(rss, 1),
        "load_avg_1m": round(psutil.getloadavg()[0], 2),  # the machine's other work, for reading the figures
        "latency_ms": {
            name.removesuffix("_ms"): {"p50": _pct(v, 50), "p95": _pct(v, 95), "p99": _pct(v, 99)}
            for name, v in sorted(timing.items())
            if name in ("e2e_ms", "queue_wait_ms", "model_ms", "segment_ms", "sam2_encode_ms")
        },
        "commit_ms": {"p50": _pct(commit_ms, 50), "p99": _pct(commit_ms, 99)},
    }
    if sam2_alone is not None:
        sam2_pct = report["cpu_pct_per_stage_thread"].get("segment", 0.0) + report["cpu_pct_unattributed"]
        report["sam2_cpu"] = {
            "cpu_pct_sam2_own": round(sam2_pct, 2),
            "cpu_pct_beyond_sam2": round(whole.total_pct - sam2_pct, 2),
            "detector_has_no_pool": detector.backend.describe().get("threads") == 1,
            "items_segmented": s.segmented,
            "cpu_s_per_item_alone": round(sam2_alone, 4),
        }
    return report, series


def plot(report: dict[str, Any], series: list[dict[str, float]], out: Path) -> None:
    """CPU over time (user, system) and the per-stage CPU bar, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    t = [p["t_s"] for p in series]
    ax1.plot(t, [p["user_pct"] for p in series], label="user")
    ax1.plot(t, [p["system_pct"] for p in series], label="system")
    ax1.set_xlabel("s")
    ax1.set_ylabel("% of one core")
    ax1.set_title(f"CPU at {report['asked_fps']:g} fps (SAM2 {'on' if report['sam2'] else 'off'})")
    ax1.legend()
    stages = {**report["cpu_pct_per_stage_thread"], "unattributed": report["cpu_pct_unattributed"]}
    ax2.bar(list(stages), list(stages.values()))
    ax2.set_ylabel("% of one core")
    ax2.set_title("per stage (inference pools: unattributed)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
