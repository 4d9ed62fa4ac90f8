"""The lab-model recipe: synthetic data -> YOLO11n training -> FP32 + INT8 ONNX -> mAP50 -> manifest.

``make -C app lab-models`` runs this. It writes into ``app/models/lab/`` the two detector ONNX files
the project commits, and ``manifest.json`` with the seed, the training settings and the mAP50 both
files reach on the held-out split (measured with onnxruntime). Each stage is skipped when its output
already exists in the work folder, so an interrupted run picks up where it stopped (``--force`` redoes
everything). CI never runs this: it takes minutes of CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

from rvm_edge.toolchain import synth
from rvm_edge.toolchain.manifests import merge_into
from rvm_edge.toolchain.train import TrainConfig

N_TRAIN, N_VAL, N_CALIB = 360, 80, 64
LAB_NAME = "rvm-lab-yolo11n-320"  # files: <name>.onnx and <name>-int8.onnx
LAB_VERSION = "lab-1"


def _log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_data(work: Path, seed: int, force: bool) -> tuple[Path, Path]:
    """The YOLO data set and the calibration frames (disjoint from train and val)."""
    data_yaml, calib = work / "data" / "data.yaml", work / "calib"
    if force or not data_yaml.is_file():
        shutil.rmtree(work / "data", ignore_errors=True)
        t0 = time.perf_counter()
        synth.write_dataset(work / "data", seed, N_TRAIN, N_VAL)
        _log(f"data set: {N_TRAIN} train + {N_VAL} val frames in {time.perf_counter() - t0:.0f} s")
    if force or not calib.is_dir():
        shutil.rmtree(calib, ignore_errors=True)
        synth.write_split(work / "calib-set", seed, "calib", N_CALIB, labels=False)
        (work / "calib-set" / "images" / "calib").rename(calib)
        shutil.rmtree(work / "calib-set", ignore_errors=True)
    return data_yaml, calib


def stage_train(work: Path, data_yaml: Path, config: TrainConfig, force: bool) -> tuple[Path, float | None]:
    from rvm_edge.toolchain.train import train

    best = work / "best.pt"
    timing = work / "train_seconds.json"
    done = work / "train_config.json"
    wanted = json.dumps(config.to_json(), sort_keys=True)
    if force or not best.is_file() or not done.is_file() or done.read_text(encoding="utf-8") != wanted:
        _log(
            f"training {config.arch}: {config.epochs} epochs + {config.finetune_rounds} x "
            f"{config.finetune_epochs} fine-tuning epochs at {config.imgsz} px"
        )
        t0 = time.perf_counter()
        train(data_yaml, work, config, reuse=not force)
        spent = (
            json.loads(timing.read_text(encoding="utf-8"))["seconds"] if timing.is_file() and not force else 0
        )
        timing.write_text(json.dumps({"seconds": spent + round(time.perf_counter() - t0)}), encoding="utf-8")
        done.write_text(wanted, encoding="utf-8")
    seconds = json.loads(timing.read_text(encoding="utf-8"))["seconds"] if timing.is_file() else None
    return best, seconds


def build(work: Path, out: Path, seed: int, config: TrainConfig, force: bool, until: str) -> int:
    work.mkdir(parents=True, exist_ok=True)
    data_yaml, calib = stage_data(work, seed, force)
    if until == "data":
        return 0
    best, train_seconds = stage_train(work, data_yaml, config, force)
    _log(f"checkpoint {best}")
    if until == "train":
        return 0

    from rvm_edge.toolchain.detector_bundle import DetectorExport, export_bundle

    spec = DetectorExport(
        checkpoint=best,
        out_dir=out,
        name=LAB_NAME,
        version=LAB_VERSION,
        imgsz=config.imgsz,
        calib=calib,
        val_images=data_yaml.parent / "images" / "val",
    )
    recipe: dict[str, Any] = {
        "made_by": "rvm_edge.toolchain.lab",
        "reproduce": f"make -C app lab-models LAB_SEED={seed}",
        "seed": seed,
        "data": {
            "generator": "rvm_edge.toolchain.synth",
            "seed": seed,
            "train": N_TRAIN,
            "val": N_VAL,
            "calib": N_CALIB,
            "frame_size": list(synth.FRAME_SIZE),
        },
        "train": {**config.to_json(), "seconds": train_seconds, "machine": f"{platform.machine()}, 2 cores"},
    }
    entries = export_bundle(spec, extra_source=recipe)
    # the checkpoint too: ultralytics' own PyTorch pipeline is the reference the runtime is compared with
    shutil.copyfile(best, out / f"{LAB_NAME}.pt")
    manifest = merge_into(out / "manifest.json", entries)
    for entry in entries:
        size = (out / entry.file).stat().st_size / 1e6
        _log(f"{entry.file}: {size:.1f} MB, mAP50 {entry.source['metrics']['map50_val']} on held-out frames")
    _log(f"manifest {manifest.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="build the lab detector (data, train, ONNX, INT8, mAP, manifest)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (data set, runs, best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the ONNX files and manifest.json")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--finetune-epochs", type=int, default=TrainConfig.finetune_epochs)
    parser.add_argument("--finetune-rounds", type=int, default=TrainConfig.finetune_rounds)
    parser.add_argument("--until", choices=("data", "train", "all"), default="all")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    args = parser.parse_args(argv)
    config = TrainConfig(
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        finetune_rounds=args.finetune_rounds,
        seed=args.seed,
    )
    return build(args.work, args.out, args.seed, config, args.force, args.until)


if __name__ == "__main__":
    raise SystemExit(main())
