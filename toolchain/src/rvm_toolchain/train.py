"""Train a YOLO11n detector from its architecture file (no pretrained weights exist offline).

``YOLO("yolo11n.pt")`` would download weights; ``YOLO("yolo11n.yaml")`` builds the same network with
random weights from the file ultralytics ships. On the synthetic intake frames a model trained from
scratch for a few dozen epochs at 320 px learns bottle / can / other well (mAP50 > 0.9 on unseen
frames) in minutes on a 2-core CPU. ultralytics caps torch at ``cpu_count - 1`` threads.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

from rvm_toolchain import offline


@dataclass(frozen=True)
class TrainConfig:
    """The training knobs that matter for reproducing a lab model (all recorded in its manifest)."""

    arch: str = "yolo11n.yaml"
    epochs: int = 30
    imgsz: int = 320
    batch: int = 16
    seed: int = 0
    workers: int = 2
    close_mosaic: int = 5
    patience: int = 100
    #: a second run from the first run's best weights (0: none); more epochs without re-initialising
    finetune_epochs: int = 24
    #: smaller batches in the second run: twice the weight updates per epoch for the same compute
    finetune_batch: int = 8
    #: how many such fine-tuning runs follow one another (each starts from the previous best)
    finetune_rounds: int = 2
    #: which epoch of the last run is kept: ultralytics' best.pt ("fitness": 0.1 mAP50 + 0.9 mAP50-95)
    #: or the epoch with the highest val mAP50 ("map50": every run then saves per-epoch checkpoints)
    select: str = "fitness"

    def to_json(self) -> dict[str, object]:
        return {
            "arch": self.arch,
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "seed": self.seed,
            "close_mosaic": self.close_mosaic,
            "optimizer": "auto",
            "device": "cpu",
            "finetune_epochs": self.finetune_epochs,
            "finetune_batch": self.finetune_batch,
            "finetune_rounds": self.finetune_rounds if self.finetune_epochs else 0,
            "select": self.select,
        }


def _run(
    weights: str, data_yaml: Path, work_dir: Path, name: str, epochs: int, batch: int, config: TrainConfig
) -> Path:
    from ultralytics import YOLO

    model = YOLO(weights)
    model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=config.imgsz,
        batch=batch,
        seed=config.seed,
        deterministic=True,
        device="cpu",
        workers=config.workers,
        close_mosaic=min(config.close_mosaic, epochs),
        patience=config.patience,
        project=str((work_dir / "runs").resolve()),  # a relative one lands under ./runs/detect/
        name=name,
        exist_ok=True,
        plots=False,
        amp=False,
        cache="ram",  # ultralytics loads data in the training thread on a CPU: decode each frame once
        # select="map50" needs weights/epoch<N>.pt of every epoch (~25 MB each with the optimizer state);
        # ultralytics only writes those bytes, the training itself is the same either way
        save_period=1 if config.select == "map50" else -1,
        verbose=True,
    )
    trainer = model.trainer
    if trainer is None or not Path(trainer.best).is_file():
        raise RuntimeError(f"training finished without a best.pt under {work_dir / 'runs' / name}")
    return Path(trainer.best)


def _finished(work_dir: Path, name: str, epochs: int) -> Path | None:
    """The best.pt of a run that completed ``epochs`` epochs (one results.csv row each), else None."""
    run = work_dir / "runs" / name
    results, best = run / "results.csv", run / "weights" / "best.pt"
    if not results.is_file() or not best.is_file():
        return None
    rows = results.read_text(encoding="utf-8").strip().splitlines()[1:]
    return best if len(rows) >= epochs else None


def select_by_map50(best: Path) -> tuple[Path, int]:
    """The checkpoint of the epoch with the highest val mAP50 in ``best``'s run, and that epoch (1-based).

    ultralytics' best.pt maximises its fitness, which weighs mAP50-95; the lab target is an mAP50.
    With ``select="map50"`` every run saves each epoch's EMA weights (``save_period=1``) in the format
    of best.pt, so the epoch with the highest mAP50 in results.csv is taken as is. Ties: the earlier.
    """
    run = best.parent.parent
    with (run / "results.csv").open(encoding="utf-8", newline="") as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    top = max(rows, key=lambda r: (float(r["metrics/mAP50(B)"]), -int(float(r["epoch"]))))
    epoch = int(float(top["epoch"]))
    path = best.parent / f"epoch{epoch - 1}.pt"  # results.csv counts from 1, the file names from 0
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-epoch checkpoint (run made without save_period=1)")
    return path, epoch


def train(
    data_yaml: Path, work_dir: Path, config: TrainConfig, reuse: bool = True, start: Path | None = None
) -> Path:
    """Train and return the kept checkpoint (see ``TrainConfig.select``), copied to ``work_dir/best.pt``.

    With ``reuse`` a phase that already completed in ``work_dir`` is not run again, so adding
    fine-tuning epochs to a finished run costs only those epochs. With ``start`` the first run is
    skipped and the fine-tuning rounds continue from that checkpoint (a committed lab model).
    """
    offline.prepare()
    best = start or (_finished(work_dir, "train", config.epochs) if reuse else None)
    if best is None:
        best = _run(config.arch, data_yaml, work_dir, "train", config.epochs, config.batch, config)
    for round_ in range(1, config.finetune_rounds + 1 if config.finetune_epochs else 1):
        name = "finetune" if round_ == 1 else f"finetune{round_}"
        tuned = _finished(work_dir, name, config.finetune_epochs) if reuse else None
        best = tuned or _run(
            str(best), data_yaml, work_dir, name, config.finetune_epochs, config.finetune_batch, config
        )
    out = work_dir / "best.pt"
    if config.select == "map50" and best != start:
        from ultralytics.utils.torch_utils import strip_optimizer

        chosen, _ = select_by_map50(best)
        strip_optimizer(chosen, str(out))  # as ultralytics does for best.pt: EMA weights, no optimizer
    else:
        shutil.copyfile(best, out)
    return out
