"""``rvm-toolchain export``: a YOLO checkpoint and/or a SAM2 checkpoint to ONNX + manifest.

Importing this module stays cheap and torch-free (``rvm-toolchain --help`` builds every parser);
torch, ultralytics and sam2 are imported only when the command runs, and their absence is reported
as the command that installs them.

    rvm-toolchain export --yolo best.pt --out DIR [--imgsz 320] [--int8 --calib FRAMES] [--val IMAGES]
    rvm-toolchain export --sam2 [CHECKPOINT.pt] --out DIR [--sam2-variant tiny] [--seed 0]

Each run adds its models to ``DIR/manifest.json`` (entries with the same name are replaced).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from rvm_toolchain.sam2_export import SAM2_CONFIGS

EXIT_ERROR = 2
RANDOM = "random"


class ToolchainMissingError(RuntimeError):
    """The export extra is not installed in this Python."""


def _require_toolchain() -> None:
    missing = [m for m in ("torch", "ultralytics", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ToolchainMissingError(
            f"`rvm-toolchain export` needs {', '.join(missing)} (the export extra, control node only): "
            "run `make -C toolchain venv` and use its rvm-toolchain"
        )


def register(subparsers: Any) -> None:
    """Add ``export`` to the ``rvm-toolchain`` sub-commands."""
    p = subparsers.add_parser(
        "export",
        help="export a YOLO .pt and/or a SAM2 checkpoint to ONNX + manifest (needs torch + ultralytics)",
        description="Export models to ONNX and add them to OUT/manifest.json (same name: replaced).",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the ONNX files and manifest.json")
    det = p.add_argument_group("detector (ultralytics YOLO)")
    det.add_argument("--yolo", type=Path, metavar="PT", help="ultralytics detect checkpoint (.pt)")
    det.add_argument("--name", help="model name in the manifest (default: <checkpoint stem>-<imgsz>)")
    det.add_argument(
        "--version", dest="model_version", help="manifest version (default: sha-<checkpoint sha256[:12]>)"
    )
    det.add_argument("--imgsz", type=int, default=320, help="square input size in pixels (default 320)")
    det.add_argument(
        "--opset", type=int, default=17, help="ONNX opset (default 17: ORT, OpenVINO, TensorRT 8.6)"
    )
    det.add_argument("--int8", action="store_true", help="also write a static INT8 model (needs --calib)")
    det.add_argument("--calib", type=Path, metavar="DIR", help="calibration frames for --int8 (8+ images)")
    det.add_argument(
        "--val", type=Path, metavar="IMAGES", help="YOLO .../images/<split> folder: record mAP50"
    )
    sam = p.add_argument_group("SAM2")
    sam.add_argument(
        "--sam2",
        metavar="CHECKPOINT",
        nargs="?",
        const=RANDOM,
        help="Meta's SAM2.1 checkpoint (.pt); without a value: seeded random weights (meaningless masks)",
    )
    sam.add_argument("--sam2-variant", default="tiny", choices=sorted(SAM2_CONFIGS), help="(default tiny)")
    sam.add_argument("--seed", type=int, default=0, help="seed of the random SAM2 weights (default 0)")
    p.set_defaults(func=run_export)


def _check_args(args: argparse.Namespace) -> None:
    if args.yolo is None and args.sam2 is None:
        raise ValueError("nothing to export: give --yolo PT and/or --sam2 [CHECKPOINT]")
    if args.int8 and args.calib is None:
        raise ValueError("--int8 needs --calib DIR (frames like the device sees, 8 or more)")
    if args.calib is not None and not args.int8:
        raise ValueError("--calib is only used with --int8")
    if args.yolo is not None and not args.yolo.is_file():
        raise ValueError(f"{args.yolo}: checkpoint not found (expected an ultralytics YOLO .pt file)")
    if args.sam2 not in (None, RANDOM) and not Path(args.sam2).is_file():
        raise ValueError(f"{args.sam2}: SAM2 checkpoint not found (e.g. sam2.1_hiera_tiny.pt from Meta)")


def _export_yolo(args: argparse.Namespace) -> None:
    from rvm_edge.manifest import sha256_file
    from rvm_toolchain.detector_bundle import DetectorExport, export_bundle
    from rvm_toolchain.manifests import merge_into

    version = args.model_version or f"sha-{sha256_file(args.yolo)[:12]}"
    spec = DetectorExport(
        checkpoint=args.yolo,
        out_dir=args.out,
        name=args.name or f"{args.yolo.stem}-{args.imgsz}",
        version=version,
        imgsz=args.imgsz,
        opset=args.opset,
        calib=args.calib if args.int8 else None,
        val_images=args.val,
    )
    entries = export_bundle(spec)
    merge_into(args.out / "manifest.json", entries)
    for e in entries:
        mp = e.source.get("metrics", {}).get("map50_val")
        extra = f", mAP50 {mp}" if mp is not None else ""
        print(
            f"{args.out / e.file}: {e.precision}, input {list(e.input_shape)}, "
            f"classes {list(e.classes)}{extra}"
        )


def _export_sam2(args: argparse.Namespace) -> None:
    from rvm_edge.manifest import sha256_file
    from rvm_toolchain.sam2_export import Sam2Recipe, export_sam2

    ckpt = None if args.sam2 == RANDOM else Path(args.sam2)
    recipe = Sam2Recipe(
        variant=args.sam2_variant, seed=args.seed, checkpoint_sha256=sha256_file(ckpt) if ckpt else None
    )
    version = ckpt.stem if ckpt else "lab-random"
    manifest = export_sam2(args.out, recipe, ckpt, version=version)
    for e in manifest.models:
        if e.role.startswith("sam2"):
            print(
                f"{args.out / e.file}: {e.role}, {e.source['size_mb']} MB, "
                f"ORT CPU {e.source['ort_cpu_ms_p50']} ms"
            )
    if ckpt is None:
        print("note: random weights: the masks are meaningless; export Meta's checkpoint for real masks")


def run_export(args: argparse.Namespace) -> int:
    """The ``rvm-toolchain export`` command; errors end with one line on stderr and exit code 2."""
    from rvm_edge.manifest import ManifestError

    errors: tuple[type[BaseException], ...] = (
        ToolchainMissingError,
        ValueError,
        ManifestError,
        FileNotFoundError,
    )
    try:
        _check_args(args)
        _require_toolchain()
        from rvm_toolchain.evaluate import EvaluateError
        from rvm_toolchain.quantize import QuantizeError
        from rvm_toolchain.sam2_export import Sam2ExportError
        from rvm_toolchain.yolo_export import ExportError

        errors += (EvaluateError, QuantizeError, Sam2ExportError, ExportError)
        if args.yolo is not None:
            _export_yolo(args)
        if args.sam2 is not None:
            _export_sam2(args)
    except errors as exc:
        print(f"rvm-toolchain: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    manifest = args.out / "manifest.json"
    print(f"manifest: {manifest} (check with `rvm-edge models verify {manifest}`)")
    return 0
