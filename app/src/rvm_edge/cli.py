"""The ``rvm-edge`` command line (argparse): detect, stream, bench, models verify, version, and the
service's commands.

The device runtime only: nothing here imports the model toolchain (``rvm-toolchain``, control node)
or torch; ``models export`` is a pointer to it.

Errors a user can fix (a bad path, a corrupt model, an unknown backend) end with one clear
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rvm_edge import __version__

EXIT_USAGE = 2


# rvm-edge's configuration on a device (rvm_edge.service.config.DEFAULT_CONFIG_PATH, without importing pydantic)
DEVICE_CONFIG = Path("/etc/rvm-edge/config.yml")


class UserError(Exception):
    """Something the user can fix; printed without a traceback."""


def default_manifest() -> Path:
    """``$RVM_EDGE_MANIFEST``, else the lab models of a source checkout (``app/models/lab``)."""
    env = os.environ.get("RVM_EDGE_MANIFEST")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "models" / "lab" / "manifest.json"
        if candidate.is_file():
            return candidate
    return Path("models/lab/manifest.json")


def default_cache_dir() -> Path:
    """Where OpenVINO keeps compiled models: compiling SAM2 takes minutes, loading the cache a second."""
    base = os.environ.get("RVM_EDGE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rvm-edge")
    return Path(base) / "openvino"


def default_sam2_manifest(detector_manifest: Path) -> Path:
    return Path(os.environ.get("RVM_EDGE_SAM2_MANIFEST", detector_manifest.parent / "sam2" / "manifest.json"))


def _detector_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--manifest", type=Path, default=None, help="model manifest (default: $RVM_EDGE_MANIFEST or lab)"
    )
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | openvino | tensorrt | ultralytics")
    p.add_argument("--model", default=None, help="model name in the manifest (default: the detector)")
    p.add_argument("--engine", type=Path, default=None, help="device-built engine file (tensorrt backend)")
    p.add_argument("--conf", type=float, default=0.25, help="detector confidence threshold")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="detector inference threads (0: one per core; default: 1 for bench --rate, as the service, "
        "else one per core)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        help="OpenVINO inference precision (auto | f32 | bf16 | f16; default auto, the service's: bf16 on a "
        "CPU with bf16 instructions, else f32)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="OpenVINO compiled-model cache (default: $RVM_EDGE_CACHE_DIR or ~/.cache/rvm-edge, /openvino)",
    )


def _load_detector(args: argparse.Namespace, batch: int = 1):
    from rvm_edge.detector import DetectorConfig, load_detector

    manifest = args.manifest or default_manifest()
    threads = args.threads
    if threads is None:  # the service's default (one thread) where the rate is a camera's, else per core
        threads = 1 if getattr(args, "rate", None) is not None else 0
    options: dict[str, object] = {
        "threads": threads,
        "batch": batch,
        "allow_spinning": getattr(args, "allow_spinning", False),
    }
    if args.backend == "openvino":
        options.update(precision=args.precision, cache_dir=args.cache_dir)
    return load_detector(
        manifest,
        args.backend,
        args.model,
        DetectorConfig(args.conf, args.iou),
        engine_path=args.engine,
        **options,
    )


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2

    from rvm_edge.decision import DecisionConfig, decide

    detector = _load_detector(args)
    decision = DecisionConfig().covering(detector.classes)
    unreadable = 0
    for i, name in enumerate(args.images):
        image = cv2.imread(name, cv2.IMREAD_COLOR)
        if image is None:
            unreadable += 1
            print(f"rvm-edge: skipping {name}: not a readable image", file=sys.stderr)
            continue
        det = detector.detect(image, i)
        verdict = decide(det, decision)
        line = {
            "image": name,
            "detections": [d.to_json() for d in det.items],
            "decision": verdict.verdict.value,
            "reason": verdict.reason,
        }
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            print(f"{name}: {verdict.verdict.value} — {verdict.reason} ({len(det.items)} detections)")
    return 1 if unreadable == len(args.images) else 0


def cmd_stream(args: argparse.Namespace) -> int:
    """Run the pipeline on a source and print one JSON line per decision (Ctrl-C stops and drains)."""
    from rvm_edge.decision import DecisionConfig
    from rvm_edge.pipeline import Pipeline, PipelineConfig
    from rvm_edge.sources import open_source

    detector = _load_detector(args)
    segmenter = _maybe_segmenter(args, detector_manifest=args.manifest or default_manifest())

    class PrintSink:
        def on_result(self, result) -> None:
            d = result.decision
            line = {
                "frame": result.frame_index,
                "source": result.source,
                "decision": d.verdict.value,
                "reason": d.reason,
                "detections": [x.to_json() for x in result.detections.items],
                "e2e_ms": round(result.timings_ms["e2e_ms"], 2),
            }
            print(json.dumps(line), flush=True)

        def on_deposit(self, deposit) -> None:
            if deposit.segmentation is not None:
                g = deposit.segmentation.geometry
                print(
                    json.dumps(
                        {
                            "frame": deposit.result.frame_index,
                            "mask": deposit.segmentation.mask_path,
                            "area_px": g.area_px,
                            "fill_ratio": round(g.fill_ratio, 3),
                            "orientation_deg": round(g.orientation_deg, 1),
                        }
                    ),
                    flush=True,
                )

    source = open_source(args.source, loop=args.loop)
    config = PipelineConfig(segment=segmenter is not None, mask_dir=args.mask_dir)
    pipe = Pipeline(
        source, detector, DecisionConfig().covering(detector.classes), segmenter, [PrintSink()], config
    )
    pipe.start()
    try:
        while not pipe.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        pipe.stop()
    s = pipe.stats
    print(
        f"rvm-edge: {s.frames_processed} frames processed, {s.frames_dropped} dropped, "
        f"{s.frames_unreadable} unreadable, {s.source_reconnects} reconnects, {s.errors} errors",
        file=sys.stderr,
    )
    if pipe.failure is not None:
        raise UserError(f"pipeline stopped: {pipe.failure}")
    return 0


def _maybe_segmenter(args: argparse.Namespace, detector_manifest: Path):
    if getattr(args, "no_segment", False):
        return None
    path = args.sam2_manifest or default_sam2_manifest(detector_manifest)
    if not path.is_file():
        if args.sam2_manifest:
            raise UserError(f"{path}: SAM2 manifest not found; build it with `make -C toolchain sam2-lab`")
        print(f"rvm-edge: no SAM2 models at {path}: segmentation off", file=sys.stderr)
        return None
    from rvm_edge.segment import load_segmenter

    return load_segmenter(path, args.sam2_threads, args.sam2_backend, args.sam2_precision, args.cache_dir)


def cmd_bench(args: argparse.Namespace) -> int:
    from rvm_edge import bench
    from rvm_edge.decision import DecisionConfig

    if args.rate is not None:
        return _bench_at_rate(args)

    frames = bench.load_encoded_frames(args.frames_dir)
    detector = _load_detector(args, batch=args.batch)
    if args.batch > detector.max_batch:
        raise UserError(f"--batch {args.batch}: this model takes at most {detector.max_batch} frames a call")
    decision = DecisionConfig().covering(detector.classes)
    segmenter = _maybe_segmenter(args, detector_manifest=args.manifest or default_manifest())
    detector.warm_up(3)
    iterations = max(args.iterations, len(frames))
    if args.batch > 1:
        ours = bench.run_batched(detector, frames, decision, iterations, args.batch)
    else:
        ours = bench.run_ours(detector, frames, decision, iterations)
    if segmenter is not None:
        segmenter.warm_up()
        seg = bench.run_ours(detector, frames, decision, len(frames), segmenter, args.segment_items)
        ours.segment = seg.segment
    report = bench.summarize(detector.backend.describe(), ours, len(ours.e2e))
    report["batch"] = args.batch
    report["rss_all_models_loaded_mb"] = bench.rss_mb()
    if args.soak:
        report.update(bench.soak(detector, args.frames_dir, decision, args.soak, segmenter))
    print(bench.format_table(report))
    if args.json:
        bench.write_json(report, args.json)
    if args.plot:
        bench.plot(report, ours, None, args.plot)
    return 0


def _bench_at_rate(args: argparse.Namespace) -> int:
    """``bench --rate``: the service's pipeline at a camera's rate (see rate_bench)."""
    from rvm_edge import bench, rate_bench
    from rvm_edge.decision import DecisionConfig

    try:
        rate_bench.check_rate(args.rate, args.duration)
    except rate_bench.RateError as exc:
        raise UserError(str(exc)) from None
    detector = _load_detector(args)
    segmenter = _maybe_segmenter(args, detector_manifest=args.manifest or default_manifest())
    report, series = rate_bench.run_at_rate(
        detector,
        segmenter,
        args.frames_dir,
        DecisionConfig().covering(detector.classes),
        args.rate,
        args.duration,
    )
    print(json.dumps(report, indent=2))
    if report["slower_than_asked"]:
        print(
            f"rvm-edge: the source kept {report['achieved_fps']:g} fps, slower than the asked {args.rate:g}",
            file=sys.stderr,
        )
    if args.json:
        bench.write_json(report, args.json)
    if args.plot:
        rate_bench.plot(report, series, args.plot)
    return 0


def _service_models(config_path: Path) -> tuple[list[Path], dict[str, Path], str]:
    """The manifests, engines and backend a service configuration names."""
    from rvm_edge.service.config import ConfigError, load_config

    try:
        models = load_config(config_path).models
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    sam2 = models.sam2_manifest()
    manifests = [models.manifest, *([sam2] if models.segmentation.enabled and sam2.is_file() else [])]
    return manifests, dict(models.engines), models.backend


def cmd_models_verify(args: argparse.Namespace) -> int:
    from rvm_edge.engines import EngineMismatch, check_engines_here
    from rvm_edge.manifest import load_manifest, verify

    engines: dict[str, Path] = {}
    backend = ""
    config = args.config or (None if args.manifests or not DEVICE_CONFIG.is_file() else DEVICE_CONFIG)
    if config is not None:  # a device: what its service runs, engines included
        paths, engines, backend = _service_models(config)
    elif args.manifests:
        paths = args.manifests
    else:  # the detector's manifest, and SAM2's beside it when there is one
        sam2 = default_sam2_manifest(default_manifest())
        paths = [default_manifest(), *([sam2] if sam2.is_file() else [])]
    failed = False
    for path in paths:
        problems = verify(path)
        if problems:
            failed = True
            for p in problems:
                print(f"FAIL {p}", file=sys.stderr)
        else:
            print(f"ok   {path}")
    if engines and not failed:
        try:
            records = check_engines_here(engines, [load_manifest(p) for p in paths], backend)
        except EngineMismatch as exc:
            print(f"FAIL {exc}", file=sys.stderr)
            return 1
        for name, r in records.items():
            print(f"ok   {r.path} ({name}: {r.backend} {r.backend_version} {r.precision} on {r.device})")
    return 1 if failed else 0


def cmd_version(_: argparse.Namespace) -> int:
    print(__version__)
    return 0


def _models_export_pointer(_: argparse.Namespace) -> int:
    raise UserError(
        "model export is the control node's toolchain, not the device's: "
        "`make -C toolchain venv`, then `rvm-toolchain export --help`"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvm-edge", description="RVM edge inference service")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="detect and decide on images, one line per image")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _detector_args(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("stream", help="run the pipeline on a camera, video or image folder")
    p.add_argument("source", help="0 | /dev/video0 | csi | GStreamer pipeline | video file | image folder")
    p.add_argument("--loop", action="store_true", help="loop a file source")
    p.add_argument("--mask-dir", type=Path, default=None, help="write SAM2 mask PNGs here")
    p.add_argument("--sam2-manifest", type=Path, default=None)
    p.add_argument("--sam2-backend", default="onnxruntime", help="SAM2 encoder: onnxruntime | openvino")
    p.add_argument("--sam2-precision", default="f32", help="SAM2 encoder precision on OpenVINO (f32 | bf16)")
    p.add_argument("--sam2-threads", type=int, default=0, help="SAM2 inference threads (0: one per core)")
    p.add_argument("--no-segment", action="store_true", help="switch SAM2 off")
    _detector_args(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("bench", help="benchmark the pipeline on a folder of frames")
    p.add_argument("frames_dir", type=Path)
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    p.add_argument("--iterations", type=int, default=100, help="frames to time (cycles the folder)")
    p.add_argument(
        "--soak", type=int, default=0, metavar="N", help="also run N frames and report the RSS slope"
    )
    p.add_argument("--sam2-manifest", type=Path, default=None)
    p.add_argument("--sam2-backend", default="onnxruntime", help="SAM2 encoder: onnxruntime | openvino")
    p.add_argument("--sam2-precision", default="f32", help="SAM2 encoder precision on OpenVINO (f32 | bf16)")
    p.add_argument("--sam2-threads", type=int, default=0, help="SAM2 inference threads (0: one per core)")
    p.add_argument("--no-segment", action="store_true", help="skip SAM2")
    p.add_argument("--segment-items", type=int, default=5, help="accepted items to segment")
    p.add_argument("--batch", type=int, default=1, help="frames per model call (models with a dynamic batch)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="FPS",
        help="run the service's pipeline at this frame rate",
    )
    p.add_argument("--duration", type=float, default=20.0, metavar="S", help="seconds at --rate (default 20)")
    p.add_argument(
        "--allow-spinning", action="store_true", help="let ONNX Runtime's threads busy-wait (high rates)"
    )
    _detector_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("models", help="model files: verify against their manifest")
    models_sub = p.add_subparsers(dest="models_command", required=True)
    v = models_sub.add_parser("verify", help="check model files against their manifest")
    v.add_argument(
        "manifests",
        nargs="*",
        type=Path,
        help=f"manifest.json files (default: {DEVICE_CONFIG}'s, else the lab's)",
    )
    v.add_argument(
        "--config",
        type=Path,
        default=None,
        help="check the models and engines this service configuration names",
    )
    v.set_defaults(func=cmd_models_verify)
    # prefix_chars="+": whatever options follow are swallowed, so the pointer is what the user sees
    e = models_sub.add_parser(
        "export", help="moved to the control node's toolchain: rvm-toolchain export", prefix_chars="+"
    )
    e.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)
    e.set_defaults(func=_models_export_pointer)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    try:  # the service commands (run, check-config, outbox, db): issue 4, rvm_edge/service/
        from rvm_edge.service.cli import register as _register_service
    except ImportError as exc:  # a runtime without the service's dependencies still detects and benches
        logging.getLogger(__name__).debug("service commands unavailable: %s", exc)
    else:
        _register_service(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    from rvm_edge.backends.base import BackendError
    from rvm_edge.manifest import ManifestError
    from rvm_edge.sources import SourceError

    try:
        return int(args.func(args))
    except (UserError, ManifestError, BackendError, SourceError, ValueError, FileNotFoundError) as exc:
        print(f"rvm-edge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
