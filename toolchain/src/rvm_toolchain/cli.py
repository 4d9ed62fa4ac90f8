"""The ``rvm-toolchain`` command line: everything that makes or checks the models a device runs.

Control node only (torch, ultralytics, sam2); the device's ``rvm-edge`` never imports it. Building
the parser stays cheap and torch-free; each command imports what it needs when it runs.

    rvm-toolchain export --yolo best.pt --out DIR [--int8 --calib FRAMES] [--val IMAGES]
    rvm-toolchain export --sam2 [CHECKPOINT.pt] --out DIR
    rvm-toolchain eval --manifest M [--split test --frames 200]     mAP50 on unseen synthetic frames
        [--backend openvino --precision bf16]                      ... inferred by OpenVINO at bf16
    rvm-toolchain compare-ultralytics FRAMES --manifest M           ours vs ultralytics, same frames
    rvm-toolchain lab ...          the lab-model recipe (python -m rvm_toolchain.lab --help)
    rvm-toolchain sam2-export ...  the lab's random-weight SAM2 (python -m rvm_toolchain.sam2_export)
    rvm-toolchain synth ...        synthetic intake frames (python -m rvm_toolchain.synth)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rvm_toolchain import compare, evaluate, export_cli

EXIT_ERROR = 2
#: commands with their own argparse ``main``: the rest of the command line goes to it unchanged
FORWARDED = {
    "lab": ("rvm_toolchain.lab", "the lab-model recipe: data, training, export, INT8, mAP50, manifest"),
    "sam2-export": ("rvm_toolchain.sam2_export", "SAM2 encoder + decoder ONNX (seeded random weights)"),
    "synth": ("rvm_toolchain.synth", "synthetic intake frames with YOLO labels"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rvm-toolchain", description="Make and check the models a device runs (control node only)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export_cli.register(sub)
    evaluate.register(sub)
    compare.register(sub)
    for name, (_, help_text) in FORWARDED.items():
        sub.add_parser(name, help=f"{help_text} (see `rvm-toolchain {name} --help`)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in FORWARDED:
        module = importlib.import_module(FORWARDED[args_list[0]][0])
        return int(module.main(args_list[1:]))
    args = build_parser().parse_args(args_list)
    from rvm_edge.manifest import ManifestError
    from rvm_toolchain.evaluate import EvaluateError

    try:
        return int(args.func(args))
    except (ManifestError, EvaluateError, ValueError, FileNotFoundError) as exc:
        print(f"rvm-toolchain: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
