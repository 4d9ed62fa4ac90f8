"""models.model picks the detector variant the service runs (issue 17: the lab's INT8 variant costs
~40 % less CPU per frame than FP32), and models.threads sizes its inference (one by default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LAB_MANIFEST
from rvm_edge.service.config import load_config
from rvm_edge.service.runner import EXIT_MODELS, Service, StartupError

from .helpers import write_config

INT8 = "rvm-lab-yolo11n-320-int8"


def _service(tmp_path: Path, frames_dir: Path, manifest: Path, **models: object) -> Service:
    path = write_config(
        tmp_path,
        manifest,
        None,
        frames_dir,
        profile="dev",
        models={"manifest": str(manifest), "segmentation": {"enabled": False}, **models},
    )
    return Service(path, load_config(path))


def test_the_named_variant_runs_on_one_inference_thread(tmp_path: Path, frames_dir: Path) -> None:
    svc = _service(tmp_path, frames_dir, LAB_MANIFEST, model=INT8)
    detector, _ = svc._load_models()
    assert svc.model_info.name == INT8  # what /healthz and every deposit name
    assert detector.backend.describe()["threads"] == 1


def test_without_a_name_the_first_detector_runs(tmp_path: Path, frames_dir: Path) -> None:
    svc = _service(tmp_path, frames_dir, LAB_MANIFEST, threads=0)
    detector, _ = svc._load_models()
    assert svc.model_info.name == "rvm-lab-yolo11n-320"
    assert detector.backend.describe()["threads"] == "one per core"


def test_on_openvino_the_detector_runs_bf16_where_the_cpu_has_it_unless_named(
    tmp_path: Path, frames_dir: Path
) -> None:
    """models.precision defaults to auto: bf16 on a CPU with bf16 instructions (the lab detector's
    accuracy holds, its CPU per frame drops by about a third), f32 elsewhere; a named one is kept."""
    from rvm_edge.backends import available_backends

    if not available_backends()["openvino"]:
        pytest.skip("needs openvino")
    from rvm_edge.backends.openvino import native_bf16

    for sub in ("auto", "named"):
        (tmp_path / sub).mkdir()
    auto = _service(tmp_path / "auto", frames_dir, LAB_MANIFEST, backend="openvino")
    ran = auto._load_models()[0].backend.describe()
    assert ran["precision"] == ("bf16" if native_bf16() else "f32") and ran["precision_asked"] == "auto"
    named = _service(tmp_path / "named", frames_dir, LAB_MANIFEST, backend="openvino", precision="f32")
    ran = named._load_models()[0].backend.describe()
    assert ran["precision"] == "f32" and "precision_asked" not in ran


@pytest.mark.parametrize(
    ("manifest", "name", "message"),
    [
        (LAB_MANIFEST, "yolo-nope", "no model named 'yolo-nope' (models: rvm-lab-yolo11n-320, " + INT8),
        (
            LAB_MANIFEST.parent / "sam2" / "manifest.json",
            "sam2.1-tiny-encoder",
            "models.model 'sam2.1-tiny-encoder': a sam2_encoder model, not a detector",
        ),
    ],
)
def test_a_name_that_is_no_detector_of_the_manifest_stops_the_start(
    tmp_path: Path, frames_dir: Path, manifest: Path, name: str, message: str
) -> None:
    if not manifest.is_file():
        pytest.skip(f"{manifest}: not built here (make -C toolchain sam2-lab)")
    svc = _service(tmp_path, frames_dir, manifest, model=name)
    with pytest.raises(StartupError) as err:
        svc._load_models()
    assert err.value.code == EXIT_MODELS and message in str(err.value)
