"""The manifest refuses what would make the device run the wrong model, and says how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import LAB_CLASSES, SIZE, write_detector_manifest
from onnx_models import fixed_detector, yolo_output
from rvm_edge.manifest import ManifestError, load_manifest, sha256_file, verify, write_manifest


def test_round_trip_keeps_every_field(one_bottle_model: Path, tmp_path: Path) -> None:
    m = load_manifest(one_bottle_model)
    copy = tmp_path / "copy.json"
    write_manifest(copy, m)
    again = load_manifest(copy)
    assert again.models == m.models
    assert again.models[0].source == {"made_by": "tests/onnx_models.py"}
    assert m.by_role("detector").classes == tuple(LAB_CLASSES)


def test_good_manifest_verifies_clean(one_bottle_model: Path) -> None:
    assert verify(one_bottle_model) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("schema"), "missing key 'schema'"),
        (lambda d: d.update(schema=2), "this rvm-edge reads schema 1"),
        (lambda d: d["models"][0].update(role="classifier"), "key 'role' is 'classifier'"),
        (lambda d: d["models"][0].update(sha256="abc"), "key 'sha256' must be 64 lowercase hex"),
        (lambda d: d["models"][0].update(input_shape=[1, 3, 0, 64]), "key 'input_shape'"),
        (lambda d: d["models"][0].update(classes=[]), "must list the class names"),
        (lambda d: d["models"][0].update(file="../escape.onnx"), "relative to the manifest"),
        (lambda d: d["models"][0].update(precision="int4"), "key 'precision' is 'int4'"),
        (lambda d: d["models"][0].update(colour="red"), "unknown key(s) colour"),
        (lambda d: d["models"].append(dict(d["models"][0])), "duplicate name(s) fixed"),
    ],
)
def test_invalid_manifest_names_file_and_key(one_bottle_model: Path, mutate, expected: str) -> None:
    data = json.loads(one_bottle_model.read_text())
    mutate(data)
    one_bottle_model.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as err:
        load_manifest(one_bottle_model)
    assert str(one_bottle_model.resolve()) in str(err.value) or str(one_bottle_model) in str(err.value)
    assert expected in str(err.value)


def test_not_json_and_missing_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="make -C toolchain lab-models"):
        load_manifest(tmp_path / "absent.json")


def test_missing_model_file_names_sha_and_command(one_bottle_model: Path) -> None:
    entry = load_manifest(one_bottle_model).models[0]
    (one_bottle_model.parent / entry.file).unlink()
    (problem,) = verify(one_bottle_model)
    assert "missing" in problem and entry.sha256 in problem
    assert "rvm-edge models verify" in problem and "make -C toolchain lab-models" in problem


def test_corrupt_model_file_is_caught_by_sha256(one_bottle_model: Path) -> None:
    model = one_bottle_model.parent / "fixed.onnx"
    expected = sha256_file(model)
    with model.open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    (problem,) = verify(one_bottle_model)
    assert f"the manifest expects {expected}" in problem and str(model) in problem


def test_model_whose_shape_or_classes_disagree_is_reported(tmp_path: Path) -> None:
    model = fixed_detector(tmp_path / "m.onnx", yolo_output(SIZE, 3, 8, []), SIZE, ["bottle", "can", "glass"])
    manifest = write_detector_manifest(tmp_path, model, LAB_CLASSES, SIZE)
    (problem,) = verify(manifest)
    assert "class names in the model ['bottle', 'can', 'glass']" in problem
    data = json.loads(manifest.read_text())
    data["models"][0]["input_shape"] = [1, 3, 320, 320]
    data["models"][0]["classes"] = ["bottle", "can", "glass"]
    manifest.write_text(json.dumps(data))
    (problem,) = verify(manifest)
    assert (
        "graph input shape [1, 3, 64, 64] disagrees with the manifest's input_shape [1, 3, 320, 320]"
        in problem
    )


def test_first_listed_variant_is_the_default_and_others_go_by_name(tmp_path: Path) -> None:
    model = fixed_detector(tmp_path / "m.onnx", yolo_output(SIZE, 3, 8, []), SIZE, LAB_CLASSES)
    path = write_detector_manifest(tmp_path, model, LAB_CLASSES, SIZE)
    data = json.loads(path.read_text())
    data["models"].append(dict(data["models"][0], name="fixed-int8", precision="int8"))
    path.write_text(json.dumps(data))
    m = load_manifest(path)
    assert m.by_role("detector").name == "fixed" and m.by_name("fixed-int8").precision == "int8"
    with pytest.raises(ManifestError, match=r"no model with role 'sam2_encoder' \(roles: \['detector'\]\)"):
        m.by_role("sam2_encoder")
    with pytest.raises(ManifestError, match=r"no model named 'fixed-fp16' \(models: fixed, fixed-int8\)"):
        m.by_name("fixed-fp16")
