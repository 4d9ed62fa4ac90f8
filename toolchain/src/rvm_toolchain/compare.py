"""``rvm-toolchain compare-ultralytics``: the runtime's pipeline against ultralytics' own, same frames.

The runtime's ``rvm-edge bench`` measures the device's pipeline alone; this command runs the same
frames through ultralytics' predict pipeline (torch) in the same process, interleaved frame by
frame, and reports both, the speed-up and the share of frames with equal detections. It lives in
the toolchain because ultralytics and torch never go to a device.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rvm_edge import bench
from rvm_edge.decision import DecisionConfig, decide
from rvm_edge.detector import DetectorConfig, load_detector
from rvm_edge.manifest import load_manifest
from rvm_edge.messages import Detection, Detections


class UltralyticsPipeline:
    """ultralytics' own predict pipeline (its letterbox, its NMS) on the same frames, same decision.

    Called right after each of our frames (``run_ours(..., interleave=this)``), so both pipelines
    see the same machine load: on a shared 2-core machine, back-to-back runs drift by more than the
    difference being measured.
    """

    def __init__(self, model_path: Path, imgsz: int, decision: DecisionConfig, keep: int) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        self.model = YOLO(str(model_path), task="detect")
        self.imgsz, self.decision, self.keep = imgsz, decision, keep
        self.e2e: list[float] = []
        self.detections: list[Detections] = []
        blank = np.full((imgsz, imgsz, 3), 114, np.uint8)
        for _ in range(2):
            self.model.predict(blank, imgsz=imgsz, rect=False, verbose=False)

    def __call__(self, i: int, data: bytes) -> None:
        names = self.model.names
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        # rect=False: the full square letterbox, as the exported model sees it (predict's default
        # minimal rectangle feeds a .pt fewer pixels and so different detections)
        r = self.model.predict(image, imgsz=self.imgsz, rect=False, verbose=False)[0]
        boxes = zip(r.boxes.cls.tolist(), r.boxes.conf.tolist(), r.boxes.xyxy.tolist(), strict=True)
        items = tuple(Detection(int(c), str(names[int(c)]), float(p), tuple(b)) for c, p, b in boxes)
        det = Detections(i, image.shape[:2], items)
        decide(det, self.decision)
        self.e2e.append((time.perf_counter() - t0) * 1e3)
        if i < self.keep:
            self.detections.append(det)


def register(subparsers: Any) -> None:
    """Add ``compare-ultralytics`` to the ``rvm-toolchain`` sub-commands."""
    p = subparsers.add_parser(
        "compare-ultralytics",
        help="time the runtime's pipeline and ultralytics' on the same frames (needs torch)",
    )
    p.add_argument("frames_dir", type=Path)
    p.add_argument("--manifest", type=Path, required=True, help="the detector's manifest.json")
    p.add_argument("--model", default=None, help="model name in the manifest (default: the detector)")
    p.add_argument(
        "--ultralytics-model", type=Path, default=None, help="model for ultralytics (default: same)"
    )
    p.add_argument("--iterations", type=int, default=100, help="frames to time (cycles the folder)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: onnxruntime's default)")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    frames = bench.load_encoded_frames(args.frames_dir)
    manifest = load_manifest(args.manifest)
    entry = manifest.by_name(args.model) if args.model else manifest.by_role("detector")
    detector = load_detector(
        args.manifest, "onnxruntime", entry.name, DetectorConfig(0.25, 0.7), threads=args.threads
    )
    decision = DecisionConfig().covering(detector.classes)
    detector.warm_up(3)
    ref_model = args.ultralytics_model or manifest.file_path(entry)
    reference = UltralyticsPipeline(ref_model, entry.input_shape[-1], decision, len(frames))
    iterations = max(args.iterations, len(frames))
    ours = bench.run_ours(detector, frames, decision, iterations, None, interleave=reference)
    report = bench.summarize(detector.backend.describe(), ours, len(ours.e2e))
    report["ultralytics_model"] = str(ref_model)
    report["peak_rss_includes_ultralytics"] = True  # torch shares the process: measure RSS without it
    report["ultralytics_e2e_ms_p50"] = bench.percentile(reference.e2e, 50)
    report["ultralytics_e2e_ms_p95"] = bench.percentile(reference.e2e, 95)
    report["ultralytics_speedup"] = report["ultralytics_e2e_ms_p50"] / report["e2e_ms_p50"]
    agree = [
        bench.detections_agree(a, b) for a, b in zip(ours.detections, reference.detections, strict=False)
    ]
    report["equal_detections_fraction"] = sum(agree) / len(agree) if agree else None
    print(bench.format_table(report))
    if args.json:
        bench.write_json(report, args.json)
    if args.plot:
        bench.plot(report, ours, reference.e2e, args.plot)
    return 0
