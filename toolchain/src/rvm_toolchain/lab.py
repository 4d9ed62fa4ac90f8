"""The lab-model recipe: synthetic data -> YOLO11n training -> FP32 + INT8 ONNX -> mAP50 -> manifest.

``make -C toolchain lab-models`` runs this. It writes into ``app/models/lab/`` the two detector ONNX files
the project commits, and ``manifest.json`` with the seed, the training settings and the mAP50 both
files reach on the val split (which also picked the checkpoint) and on the unseen test split (measured with onnxruntime). Each stage is skipped when its output
already exists in the work folder, so an interrupted run picks up where it stopped (``--force`` redoes
everything). CI never runs this: it takes minutes of CPU.

``--resume-from CKPT --finetune-rounds N`` continues from a lab checkpoint instead (the committed
``rvm-lab-yolo11n-320.pt``): a full run from scratch takes about two hours on the lab's 2-core
control node, while one more fine-tuning round, which is what a model whose validation curve was
still rising needs, takes about 20 minutes (17 for lab-2). The data is rendered again from the seed
(the same frames), N rounds run exactly as the full recipe's rounds do (each from the previous best), and the
export, INT8, metrics and manifest follow the normal path. The manifest's ``source.train.resumed_from``
records the starting checkpoint's sha256 and the rounds added; when the manifest beside the checkpoint
describes it, the recipe is carried over, so ``reproduce`` names the equivalent full run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rvm_edge.manifest import sha256_file
from rvm_toolchain import synth
from rvm_toolchain.manifests import merge_into
from rvm_toolchain.train import TrainConfig

N_TRAIN, N_VAL, N_CALIB = 360, 80, 64
LAB_NAME = "rvm-lab-yolo11n-320"  # files: <name>.onnx and <name>-int8.onnx
LAB_VERSION = "lab-2"  # lab-1: 2 fine-tuning rounds (mAP50 0.897); lab-2: 3 rounds


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


def stage_train(
    work: Path, data_yaml: Path, config: TrainConfig, force: bool, start: Path | None = None
) -> tuple[Path, float | None]:
    from rvm_toolchain.train import train

    best = work / "best.pt"
    timing = work / "train_seconds.json"
    done = work / "train_config.json"
    wanted = json.dumps({**config.to_json(), "start": str(start) if start else None}, sort_keys=True)
    if force or not best.is_file() or not done.is_file() or done.read_text(encoding="utf-8") != wanted:
        first = f"from {start.name}" if start else f"{config.arch}: {config.epochs} epochs"
        _log(
            f"training {first} + {config.finetune_rounds} x "
            f"{config.finetune_epochs} fine-tuning epochs at {config.imgsz} px"
        )
        t0 = time.perf_counter()
        train(data_yaml, work, config, reuse=not force, start=start)
        spent = (
            json.loads(timing.read_text(encoding="utf-8"))["seconds"] if timing.is_file() and not force else 0
        )
        timing.write_text(json.dumps({"seconds": spent + round(time.perf_counter() - t0)}), encoding="utf-8")
        done.write_text(wanted, encoding="utf-8")
    seconds = json.loads(timing.read_text(encoding="utf-8"))["seconds"] if timing.is_file() else None
    return best, seconds


def reproduce(seed: int, config: TrainConfig) -> str:
    """The make command that runs ``config`` from scratch (defaults left out)."""
    extra = [
        f"LAB_FINETUNE_ROUNDS={config.finetune_rounds}"
        if config.finetune_rounds != TrainConfig.finetune_rounds
        else "",
        f"LAB_SELECT={config.select}" if config.select != TrainConfig.select else "",
    ]
    return " ".join([f"make -C toolchain lab-models LAB_SEED={seed}", *filter(None, extra)])


#: the settings a resumed round must share with the recipe it continues for the two to add up
_ROUND_KEYS = ("arch", "imgsz", "seed", "close_mosaic", "finetune_epochs", "finetune_batch")


def _prior_train(start: Path, sha: str) -> dict[str, Any] | None:
    """``source.train`` of the manifest beside ``start`` if an entry there was made from it."""
    beside = start.parent / "manifest.json"
    if not beside.is_file():
        return None
    for model in json.loads(beside.read_text(encoding="utf-8")).get("models", []):
        source = model.get("source", {})
        if source.get("checkpoint_sha256") == sha and isinstance(source.get("train"), dict):
            return dict(source["train"])
    return None


def resumed_recipe(start: Path, config: TrainConfig, seconds: float | None) -> tuple[dict[str, Any], str]:
    """``source.train`` and ``source.reproduce`` of a model fine-tuned further from ``start``.

    When the manifest beside ``start`` records it (same sha256, same round settings), the result is
    that recipe with ``config.finetune_rounds`` more rounds, and a full run with the total number of
    rounds takes the same steps. Otherwise only the start's sha256 and the rounds added describe it.
    """
    sha = sha256_file(start)
    resumed: dict[str, Any] = {
        "checkpoint": start.name,
        "checkpoint_sha256": sha,
        "rounds_added": config.finetune_rounds,
        "seconds_added": seconds,
    }
    prior = _prior_train(start, sha)
    ours = config.to_json()
    if prior is None or any(prior.get(k) != ours[k] for k in _ROUND_KEYS):
        command = (
            f"python -m rvm_toolchain.lab --seed {config.seed} --resume-from CKPT "
            f"--finetune-rounds {config.finetune_rounds} --select {config.select} "
            f"(CKPT: sha256 {sha})"
        )
        return {**ours, "epochs": 0, "resumed_from": resumed}, command
    total = replace(
        config,
        epochs=int(prior["epochs"]),
        batch=int(prior["batch"]),
        finetune_rounds=int(prior["finetune_rounds"]) + config.finetune_rounds,
    )
    before = prior.get("seconds")
    train = {
        **total.to_json(),
        "seconds": before + seconds if isinstance(before, int | float) and seconds is not None else None,
        "resumed_from": {**resumed, "rounds_before": prior["finetune_rounds"], "seconds_before": before},
    }
    return train, reproduce(config.seed, total)


def build(
    work: Path,
    out: Path,
    seed: int,
    config: TrainConfig,
    force: bool,
    until: str,
    resume_from: Path | None = None,
) -> int:
    work.mkdir(parents=True, exist_ok=True)
    data_yaml, calib = stage_data(work, seed, force)
    if until == "data":
        return 0
    start: Path | None = None
    train_dir = work
    if resume_from is not None:
        # its own folder per starting checkpoint: a resumed round never passes for a full run's round
        start = resume_from.resolve()
        train_dir = work / f"resume-{sha256_file(start)[:12]}"
        train_dir.mkdir(exist_ok=True)
        _log(f"resuming from {start} ({config.finetune_rounds} more fine-tuning rounds)")
    best, train_seconds = stage_train(train_dir, data_yaml, config, force, start)
    _log(f"checkpoint {best}")
    if until == "train":
        return 0

    from rvm_toolchain.detector_bundle import DetectorExport, export_bundle

    spec = DetectorExport(
        checkpoint=best,
        out_dir=out,
        name=LAB_NAME,
        version=LAB_VERSION,
        imgsz=config.imgsz,
        calib=calib,
        val_images=data_yaml.parent / "images" / "val",
    )
    if start is None:
        train: dict[str, Any] = {**config.to_json(), "seconds": train_seconds}
        how = reproduce(seed, config)
    else:
        train, how = resumed_recipe(start, config, train_seconds)
    recipe: dict[str, Any] = {
        "made_by": "rvm_toolchain.lab",
        "reproduce": how,
        "seed": seed,
        "data": {
            "generator": "rvm_toolchain.synth",
            "seed": seed,
            "train": N_TRAIN,
            "val": N_VAL,
            "calib": N_CALIB,
            "frame_size": list(synth.FRAME_SIZE),
        },
        "train": {**train, "machine": f"{platform.machine()}, 2 cores"},
    }
    entries = export_bundle(spec, extra_source=recipe)
    # the checkpoint too: ultralytics' own PyTorch pipeline is the reference the runtime is compared with
    shutil.copyfile(best, out / f"{LAB_NAME}.pt")
    merge_into(out / "manifest.json", entries)
    entries = with_test_metrics(out / "manifest.json", entries, seed, work / "test")
    manifest = merge_into(out / "manifest.json", entries)
    for entry in entries:
        size = (out / entry.file).stat().st_size / 1e6
        metrics = entry.source["metrics"]
        _log(
            f"{entry.file}: {size:.1f} MB, mAP50 {metrics['map50_test']} on the unseen test split "
            f"({metrics['map50_val']} on val, the split that picked the checkpoint)"
        )
    _log(f"manifest {manifest.path}")
    return 0


N_TEST = 200  # frames of the "test" split: no training or selection step ever sees them


def with_test_metrics(manifest_path: Path, entries: list[Any], seed: int, work: Path) -> list[Any]:
    """The entries with mAP on the unseen "test" split added beside the val split's figures."""
    from rvm_toolchain.evaluate import evaluate_manifest

    report = evaluate_manifest(manifest_path, seed, "test", N_TEST, work)
    out = []
    for entry in entries:
        figures = report[entry.name]
        metrics = {
            **entry.source.get("metrics", {}),
            "val_split_note": "the split ultralytics picked best.pt with: optimistic",
            "map50_test": figures["map50"],
            "map50_95_test": figures["map50_95"],
            "precision_test": figures["box_precision"],
            "recall_test": figures["recall"],
            "test_images": N_TEST,
        }
        out.append(replace(entry, source={**entry.source, "metrics": metrics}))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="build the lab detector (data, train, ONNX, INT8, mAP, manifest)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (data set, runs, best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the ONNX files and manifest.json")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--finetune-epochs", type=int, default=TrainConfig.finetune_epochs)
    parser.add_argument(
        "--finetune-rounds",
        type=int,
        help=f"fine-tuning runs after the first (default {TrainConfig.finetune_rounds}; "
        "with --resume-from: runs added to the checkpoint, default 1)",
    )
    parser.add_argument(
        "--resume-from",
        type=Path,
        metavar="PT",
        help="skip the first run and fine-tune this lab checkpoint further (e.g. the committed .pt)",
    )
    parser.add_argument(
        "--select",
        choices=("fitness", "map50"),
        default=TrainConfig.select,
        help="the last run's epoch to export: ultralytics' best.pt (fitness) or the highest val mAP50",
    )
    parser.add_argument("--until", choices=("data", "train", "all"), default="all")
    parser.add_argument("--force", action="store_true", help="redo every stage")
    args = parser.parse_args(argv)
    if args.resume_from is not None and not args.resume_from.is_file():
        parser.error(f"--resume-from {args.resume_from}: no such file")
    rounds = args.finetune_rounds
    if rounds is None:
        rounds = 1 if args.resume_from is not None else TrainConfig.finetune_rounds
    config = TrainConfig(
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        finetune_rounds=rounds,
        seed=args.seed,
        select=args.select,
    )
    return build(args.work, args.out, args.seed, config, args.force, args.until, args.resume_from)


if __name__ == "__main__":
    raise SystemExit(main())
