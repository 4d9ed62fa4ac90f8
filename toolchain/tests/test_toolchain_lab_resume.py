"""``lab --resume-from``: the wiring of one more fine-tuning round from a lab checkpoint (no training here).

The real run takes ~25 CPU minutes; these tests check what it is asked to do and what its manifest
records: the starting checkpoint's sha256, the rounds added, and a recipe that still adds up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rvm_edge.manifest import sha256_file
from rvm_toolchain import lab
from rvm_toolchain.train import TrainConfig, select_by_map50

PRIOR_TRAIN = {**TrainConfig().to_json(), "seconds": 6750, "machine": "x86_64, 2 cores"}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake_build(
        work: Path,
        out: Path,
        seed: int,
        config: TrainConfig,
        force: bool,
        until: str,
        resume_from: Path | None = None,
    ) -> int:
        seen.append({"seed": seed, "config": config, "until": until, "resume_from": resume_from})
        return 0

    monkeypatch.setattr(lab, "build", fake_build)
    return seen


def _checkpoint(folder: Path, manifest_train: dict[str, Any] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pt = folder / "rvm-lab-yolo11n-320.pt"
    pt.write_bytes(b"not really a checkpoint")
    if manifest_train is not None:
        source = {"checkpoint_sha256": sha256_file(pt), "train": manifest_train}
        (folder / "manifest.json").write_text(json.dumps({"schema": 1, "models": [{"source": source}]}))
    return pt


def test_resume_defaults_to_one_round_of_the_recipe(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    pt = _checkpoint(tmp_path / "lab", None)
    base = ["--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]
    assert lab.main([*base, "--resume-from", str(pt)]) == 0
    assert lab.main(base) == 0
    resumed, full = (c["config"] for c in calls)
    assert calls[0]["resume_from"] == pt and calls[1]["resume_from"] is None
    assert resumed.finetune_rounds == 1 and full.finetune_rounds == TrainConfig.finetune_rounds
    # the added round is one of the recipe's rounds: same epochs, batch, mosaic switch-off
    assert (resumed.finetune_epochs, resumed.finetune_batch, resumed.close_mosaic) == (24, 8, 5)


def test_resume_from_a_missing_checkpoint_is_refused(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    with pytest.raises(SystemExit):
        lab.main(["--work", "w", "--out", "o", "--resume-from", str(tmp_path / "nope.pt")])
    assert calls == []


def test_resumed_manifest_adds_the_round_to_the_recipe_beside_the_checkpoint(tmp_path: Path) -> None:
    pt = _checkpoint(tmp_path / "lab", PRIOR_TRAIN)
    config = TrainConfig(finetune_rounds=1, select="map50")
    train, how = lab.resumed_recipe(pt, config, 1500)
    assert train["finetune_rounds"] == 3 and train["epochs"] == 30 and train["batch"] == 16
    assert train["seconds"] == 6750 + 1500 and train["select"] == "map50"
    assert train["resumed_from"] == {
        "checkpoint": pt.name,
        "checkpoint_sha256": sha256_file(pt),
        "rounds_added": 1,
        "seconds_added": 1500,
        "rounds_before": 2,
        "seconds_before": 6750,
    }
    assert how == "make -C toolchain lab-models LAB_SEED=0 LAB_FINETUNE_ROUNDS=3 LAB_SELECT=map50"


@pytest.mark.parametrize("prior", [None, {**PRIOR_TRAIN, "finetune_batch": 16}])
def test_resume_without_a_matching_recipe_records_only_the_checkpoint(
    tmp_path: Path, prior: dict[str, Any] | None
) -> None:
    pt = _checkpoint(tmp_path / "lab", prior)
    train, how = lab.resumed_recipe(pt, TrainConfig(finetune_rounds=1), None)
    assert train["epochs"] == 0 and train["finetune_rounds"] == 1
    assert train["resumed_from"]["checkpoint_sha256"] == sha256_file(pt)
    assert "--resume-from" in how and sha256_file(pt) in how


def test_select_by_map50_takes_that_epochs_own_checkpoint(tmp_path: Path) -> None:
    weights = tmp_path / "runs" / "finetune" / "weights"
    weights.mkdir(parents=True)
    # ultralytics' layout: results.csv counts epochs from 1, weights/epoch<N>.pt from 0
    (weights.parent / "results.csv").write_text(
        "epoch,time,metrics/mAP50(B),metrics/mAP50-95(B)\n1,10,0.80,0.70\n2,20,0.91,0.72\n3,30,0.91,0.75\n"
    )
    for i in range(3):
        (weights / f"epoch{i}.pt").write_bytes(b"x")
    assert select_by_map50(weights / "best.pt") == (weights / "epoch1.pt", 2)  # ties: the earlier epoch
    (weights / "epoch1.pt").unlink()
    with pytest.raises(FileNotFoundError, match="save_period"):
        select_by_map50(weights / "best.pt")
