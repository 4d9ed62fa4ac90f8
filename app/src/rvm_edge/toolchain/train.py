"""Train a YOLO11n detector from its architecture file (no pretrained weights exist offline).

``YOLO("yolo11n.pt")`` would download weights; ``YOLO("yolo11n.yaml")`` builds the same network with
random weights from the file ultralytics ships. On the synthetic intake frames a model trained from
scratch for a few dozen epochs at 320 px learns bottle / can / other well (mAP50 > 0.9 on held-out
frames) in minutes on a 2-core CPU. ultralytics caps torch at ``cpu_count - 1`` threads.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rvm_edge.toolchain import offline


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
        }


def train(data_yaml: Path, work_dir: Path, config: TrainConfig) -> Path:
    """Train and return the path of the best checkpoint (``best.pt``), copied to ``work_dir``."""
    offline.prepare()
    from ultralytics import YOLO

    model = YOLO(config.arch)
    model.train(
        data=str(data_yaml),
        epochs=config.epochs,
        imgsz=config.imgsz,
        batch=config.batch,
        seed=config.seed,
        deterministic=True,
        device="cpu",
        workers=config.workers,
        close_mosaic=config.close_mosaic,
        patience=config.patience,
        project=str(work_dir / "runs"),
        name="train",
        exist_ok=True,
        plots=False,
        amp=False,
        verbose=True,
    )
    trainer = model.trainer
    if trainer is None or not Path(trainer.best).is_file():
        raise RuntimeError(f"training finished without a best.pt under {work_dir / 'runs'}")
    best = work_dir / "best.pt"
    shutil.copyfile(trainer.best, best)
    return best
