"""Frames of an intake cycle for the SAM2-on rate benchmark: one accepted item, then an empty chamber.

``make -C app bench-frames`` draws an item (or several) in nearly every frame, so at 2 fps SAM2
would be asked for a mask twice a second, several times what it can do on a CPU (seconds per
item): the folder source would then wait for it and the run would measure SAM2's rate, not the
camera's. A reverse vending machine sees an item now and then and an empty chamber in between.
This writes ``--frames`` frames where every ``--every``-th shows one item the lab detector
accepts (a bottle or a can) and the others the empty chamber, from the toolchain's synthetic
generator; it needs numpy + OpenCV and the runtime, so it runs in app/.venv:

    PYTHONPATH=toolchain/src app/.venv/bin/python benchmarks/intake_cycle.py --out out/bench/cycle24
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from rvm_edge.decision import DecisionConfig, decide
from rvm_edge.detector import load_detector
from rvm_toolchain.synth import render

SEED, FIRST_INDEX = 11, 3_000_000  # the bench frames' stream (make -C app bench-frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--every", type=int, default=24, help="one item every N frames (24: every 12 s at 2 fps)")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument(
        "--manifest", type=Path, default=Path(__file__).parents[1] / "app/models/lab/manifest.json"
    )
    args = p.parse_args(argv)
    if args.every < 1 or args.frames < 1:
        p.error("--every and --frames must be at least 1")
    detector = load_detector(args.manifest)
    decision = DecisionConfig().covering(detector.classes)
    args.out.mkdir(parents=True, exist_ok=True)
    candidate = FIRST_INDEX
    for i in range(args.frames):
        if i % args.every == 0:
            while True:  # the next one-item frame the detector accepts (in view, not 'other')
                candidate += 1
                sample = render(SEED, candidate, objects=1)
                if decide(detector.detect(sample.image), decision).accepted:
                    break
        else:
            sample = render(SEED, FIRST_INDEX + i, objects=0)
        cv2.imwrite(str(args.out / f"cycle_{i:04d}.jpg"), sample.image)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
