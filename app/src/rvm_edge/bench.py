"""``rvm-edge bench``: where the time and memory go, on real frames, on this machine.

Measures, per frame: image decode -> letterbox -> model -> decode/NMS -> decision (``e2e``),
the model alone (``model``), and SAM2 (encode + box decode) for accepted items, and optionally a
soak that reports the resident-memory slope. Figures are printed as a table, written as JSON and
plotted. The comparison with ultralytics' own pipeline (torch) is the toolchain's
``rvm-toolchain compare-ultralytics``, which drives :func:`run_ours` with its ``interleave`` hook.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

from rvm_edge.decision import DecisionConfig, decide
from rvm_edge.detector import Detector
from rvm_edge.messages import Deposit, Detections, ItemResult
from rvm_edge.segment import Sam2Segmenter
from rvm_edge.sources import IMAGE_SUFFIXES


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    return psutil.Process(os.getpid()).memory_info().rss / (1024.0 * 1024.0)


def load_encoded_frames(folder: Path) -> list[tuple[str, bytes]]:
    """Frames as encoded file bytes, so decoding is part of what is measured (as on a device)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) to benchmark")
    return [(str(p), p.read_bytes()) for p in files]


@dataclass
class Samples:
    model: list[float]
    e2e: list[float]
    segment: list[float]
    detections: list[Detections]
    stages: dict[str, list[float]] = field(default_factory=dict)  # where e2e goes, per frame

    def add_stages(self, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            self.stages.setdefault(k, []).append(v)


def run_ours(
    detector: Detector,
    frames: list[tuple[str, bytes]],
    decision: DecisionConfig,
    iterations: int,
    segmenter: Sam2Segmenter | None = None,
    max_segments: int = 5,
    interleave: Callable[[int, bytes], None] | None = None,
) -> Samples:
    s = Samples([], [], [], [])
    for i in range(iterations):
        _, data = frames[i % len(frames)]
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            continue
        t_decoded = time.perf_counter()
        det = detector.detect(image, i)
        t_detected = time.perf_counter()
        verdict = decide(det, decision)
        t1 = time.perf_counter()
        s.e2e.append((t1 - t0) * 1e3)
        s.model.append(det.timings_ms["model_ms"])
        s.add_stages(
            {
                "image_decode_ms": (t_decoded - t0) * 1e3,
                "preprocess_ms": det.timings_ms["preprocess_ms"],
                "postprocess_ms": det.timings_ms["postprocess_ms"],
                "decision_ms": (t1 - t_detected) * 1e3,
            }
        )
        if i < len(frames):
            s.detections.append(det)
        if segmenter is not None and verdict.item is not None and len(s.segment) < max_segments:
            t2 = time.perf_counter()
            segmenter.segment(image, [verdict.item.box])
            s.segment.append((time.perf_counter() - t2) * 1e3)
        if interleave is not None:
            interleave(i, data)
    return s


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detections_agree(
    ours: Detections, ref: Detections, min_iou: float = 0.99, conf_tol: float = 0.01
) -> bool:
    """Same count, each matched to one of the same class with IoU and confidence within tolerance."""
    if len(ours.items) != len(ref.items):
        return False
    unused = list(ref.items)
    for d in ours.items:
        match = next(
            (
                r
                for r in unused
                if r.class_id == d.class_id
                and abs(r.confidence - d.confidence) <= conf_tol
                and box_iou(r.box, d.box) >= min_iou
            ),
            None,
        )
        if match is None:
            return False
        unused.remove(match)
    return True


def run_batched(
    detector: Detector, frames: list[tuple[str, bytes]], decision: DecisionConfig, iterations: int, batch: int
) -> Samples:
    """Throughput at ``batch`` frames per model call; per-frame figures are the batch time over its size."""
    s = Samples([], [], [], [])
    for start in range(0, iterations, batch):
        n = min(batch, iterations - start)
        t0 = time.perf_counter()
        images = [
            cv2.imdecode(np.frombuffer(frames[(start + k) % len(frames)][1], np.uint8), cv2.IMREAD_COLOR)
            for k in range(n)
        ]
        dets = detector.detect_batch(images, list(range(start, start + n)))
        for d in dets:
            decide(d, decision)
        per_frame = (time.perf_counter() - t0) * 1e3 / n
        s.e2e.extend([per_frame] * n)
        s.model.extend([dets[0].timings_ms["model_ms"]] * n)
    return s


class _SoakSink:
    """Counts results and samples RSS; stops the source after ``n`` frames. Keeps nothing else,
    so any growth is the pipeline's own."""

    def __init__(self, n: int, stop: Callable[[], None]) -> None:
        self.n, self.stop, self.count = n, stop, 0
        self.step = max(1, n // 50)
        self.samples: list[tuple[int, float]] = []

    def on_result(self, result: ItemResult) -> None:
        if self.count % self.step == 0:
            self.samples.append((self.count, rss_mb()))
        self.count += 1
        if self.count >= self.n:
            self.stop()

    def on_deposit(self, deposit: Deposit) -> None:
        pass


def soak(
    detector: Detector,
    frames_dir: Path,
    decision: DecisionConfig,
    n: int,
    segmenter: Sam2Segmenter | None = None,
) -> dict[str, Any]:
    """``n`` frames through the real pipeline (threads, queues, looping folder source, SAM2 when
    given); a line through the RSS samples shows a leak as a positive slope."""
    from rvm_edge.pipeline import Pipeline, PipelineConfig
    from rvm_edge.sources import ImageFolderSource

    source = ImageFolderSource(frames_dir, loop=True)
    sink = _SoakSink(n, source.stop)
    config = PipelineConfig(segment=segmenter is not None, warmup_runs=1)
    pipe = Pipeline(source, detector, decision, segmenter, [sink], config)
    pipe.start()
    pipe.wait()
    pipe.stop()
    if pipe.failure is not None:
        raise RuntimeError(f"soak stopped: {pipe.failure}")
    samples = sink.samples
    warm = samples[len(samples) // 5 :]  # the first fifth settles allocator pools and caches
    x = np.array([s[0] for s in warm], float)
    y = np.array([s[1] for s in warm], float)
    slope = float(np.polyfit(x, y, 1)[0]) * 1000.0 if len(warm) >= 2 else 0.0
    growth = float(y.max() - y[0]) if len(y) else 0.0
    # a leak grows with every frame; allocator pools grow in a few steps and stop. Flat: under
    # 1 MB per 1000 frames, or under 4 MB in all after warm-up (one page-pool step on a short run)
    return {
        "soak_frames": n,
        "soak_rss_start_mb": samples[0][1],
        "soak_rss_end_mb": samples[-1][1],
        "rss_growth_after_warmup_mb": growth,
        "rss_slope_mb_per_1k_frames": slope,
        "rss_flat": slope < 1.0 or growth < 4.0,
        "soak_rss_samples": samples,
    }


def summarize(backend: dict[str, Any], ours: Samples, iterations: int) -> dict[str, Any]:
    return {
        "backend": backend.get("backend"),
        "backend_detail": backend,
        "frames": iterations,
        "model_ms_p50": percentile(ours.model, 50),
        "model_ms_p95": percentile(ours.model, 95),
        "e2e_ms_p50": percentile(ours.e2e, 50),
        "e2e_ms_p95": percentile(ours.e2e, 95),
        "stages_ms_p50": {k: percentile(v, 50) for k, v in ours.stages.items()},
        "e2e_over_model": (percentile(ours.e2e, 50) or 0) / (percentile(ours.model, 50) or 1),
        "segment_ms_p50": percentile(ours.segment, 50),
        # the worst item matters for the 1.5 s target as much as the median
        "segment_ms_max": max(ours.segment) if ours.segment else None,
        "segments": len(ours.segment),
        "full_item_ms_p50": (percentile(ours.e2e, 50) or 0) + percentile(ours.segment, 50)
        if ours.segment
        else None,
        # sequential frames per second from the frames' own time (comparison runs share the wall clock)
        "fps": 1000.0 * len(ours.e2e) / sum(ours.e2e) if ours.e2e else None,
        "peak_rss_mb": peak_rss_mb(),
    }


def format_table(report: dict[str, Any]) -> str:
    rows = [
        ("backend", report.get("backend")),
        ("input", "x".join(str(v) for v in report.get("backend_detail", {}).get("input_shape", []))),
        ("frames", report.get("frames")),
        ("model ms p50 / p95", _pair(report, "model_ms")),
        ("e2e ms p50 / p95 (decode->decision)", _pair(report, "e2e_ms")),
        ("e2e / model", _fmt(report.get("e2e_over_model"), "{:.2f}x")),
        (
            "  p50 ms: decode / pre / post / decision",
            " / ".join(
                _fmt(report.get("stages_ms_p50", {}).get(k), "{:.2f}")
                for k in ("image_decode_ms", "preprocess_ms", "postprocess_ms", "decision_ms")
            ),
        ),
        ("segment ms p50 (SAM2 encode+decode)", _fmt(report.get("segment_ms_p50"))),
        ("segment ms max / items", f"{_fmt(report.get('segment_ms_max'))} / {report.get('segments', 0)}"),
        ("full item ms p50", _fmt(report.get("full_item_ms_p50"))),
        ("fps (sequential)", _fmt(report.get("fps"))),
        ("peak RSS MB", _fmt(report.get("peak_rss_mb"))),
    ]
    if "ultralytics_e2e_ms_p50" in report:
        rows += [
            ("ultralytics e2e ms p50", _fmt(report["ultralytics_e2e_ms_p50"])),
            ("speed-up vs ultralytics", _fmt(report.get("ultralytics_speedup"), "{:.2f}x")),
            ("frames with equal detections", _fmt(report.get("equal_detections_fraction"), "{:.0%}")),
        ]
    if "rss_slope_mb_per_1k_frames" in report:
        rows += [
            ("soak frames", report["soak_frames"]),
            ("RSS slope MB / 1k frames", _fmt(report["rss_slope_mb_per_1k_frames"], "{:+.3f}")),
            ("RSS flat", report["rss_flat"]),
        ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _fmt(v: Any, spec: str = "{:.1f}") -> str:
    return "-" if v is None else spec.format(v)


def _pair(report: dict[str, Any], key: str) -> str:
    return f"{_fmt(report.get(key + '_p50'))} / {_fmt(report.get(key + '_p95'))}"


def plot(report: dict[str, Any], ours: Samples, ultra_e2e: list[float] | None, out: Path) -> None:
    """Latency distributions (and RSS during the soak) as one PNG; matplotlib is imported only here."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soak_samples = report.get("soak_rss_samples")
    fig, axes = plt.subplots(
        1, 2 if soak_samples else 1, figsize=(11 if soak_samples else 6, 4), squeeze=False
    )
    ax = axes[0][0]
    series = [("model", ours.model), ("e2e", ours.e2e)]
    if ultra_e2e:
        series.append(("ultralytics e2e", ultra_e2e))
    ax.boxplot([s for _, s in series], showfliers=False)
    ax.set_xticks(range(1, len(series) + 1), [n for n, _ in series])
    ax.set_ylabel("ms per frame")
    ax.set_title(f"{report['backend']} — p50 e2e {report['e2e_ms_p50']:.1f} ms")
    if soak_samples:
        ax2 = axes[0][1]
        ax2.plot([s[0] for s in soak_samples], [s[1] for s in soak_samples])
        ax2.set_xlabel("frame")
        ax2.set_ylabel("RSS MB")
        ax2.set_title(f"soak: {report['rss_slope_mb_per_1k_frames']:+.3f} MB / 1k frames")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_json(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
