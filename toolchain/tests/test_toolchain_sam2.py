"""SAM2 -> encoder/decoder ONNX: the documented interface, and the same masks as Meta's predictor.

The weights are seeded random ones (nothing can be downloaded): the masks mean nothing, but the
ONNX pair must compute exactly what ``SAM2ImagePredictor`` computes with the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2")
pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rvm_edge.manifest import load_manifest, verify  # noqa: E402
from rvm_toolchain import sam2_export as se  # noqa: E402

SEED = 3


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sam2")
    se.export_sam2(out, se.Sam2Recipe(seed=SEED), measure=False)
    return out


def _shape(value: object) -> list[object]:
    return [d if isinstance(d, int) else "N" for d in value.shape]  # type: ignore[attr-defined]


def test_io_names_and_shapes_are_the_documented_ones(pair: Path) -> None:
    enc = ort.InferenceSession(str(pair / se.ENCODER_FILE), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(pair / se.DECODER_FILE), providers=["CPUExecutionProvider"])
    assert [(i.name, _shape(i)) for i in enc.get_inputs()] == [("image", [1, 3, 1024, 1024])]
    doc = se.INTERFACE_DOC
    assert {o.name: _shape(o) for o in enc.get_outputs()} == doc["encoder_outputs"]
    assert [i.name for i in dec.get_inputs()] == list(se.DECODER_INPUTS)
    dims = {i.name: ["N" if not isinstance(d, int) else d for d in i.shape] for i in dec.get_inputs()}
    assert dims["point_coords"] == ["N", "N", 2] and dims["point_labels"] == ["N", "N"]
    assert [o.name for o in dec.get_outputs()] == list(se.DECODER_OUTPUTS)


def test_manifest_verifies_and_documents_the_preprocessing(pair: Path) -> None:
    manifest = load_manifest(pair / "manifest.json")
    roles = {m.role: m for m in manifest.models}
    assert set(roles) == {"sam2_encoder", "sam2_decoder"}
    enc = roles["sam2_encoder"]
    assert enc.input_shape == (1, 3, 1024, 1024)
    assert enc.source["interface"]["encoder_input"]["mean"] == [0.485, 0.456, 0.406]
    assert enc.source["recipe"]["seed"] == SEED and "meaningless" in enc.source["weights"]
    assert roles["sam2_decoder"].input_shape == (1, 256, 64, 64)
    assert verify(pair / "manifest.json") == []


def test_onnx_pair_gives_the_predictors_masks_for_several_boxes(pair: Path) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(se.build_model("tiny", None, SEED))
    rng = np.random.default_rng(0)
    image = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    predictor.set_image(image)
    boxes = np.array([[20, 30, 150, 200], [160, 50, 300, 230]], np.float32)
    _, ref_iou, ref_low = predictor.predict(box=boxes, multimask_output=False, return_logits=True)

    enc = ort.InferenceSession(str(pair / se.ENCODER_FILE), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(pair / se.DECODER_FILE), providers=["CPUExecutionProvider"])
    x = predictor._transforms(image)[None].numpy()
    embed, f0, f1 = enc.run(None, {"image": x})
    scale = np.array([1024 / 320, 1024 / 240], np.float32)
    coords = (boxes.reshape(-1, 2, 2) * scale).astype(np.float32)
    labels = np.tile(np.array([[2, 3]], np.float32), (len(boxes), 1))
    feeds = {"image_embed": embed, "high_res_feats_0": f0, "high_res_feats_1": f1}
    masks, iou = dec.run(None, {**feeds, "point_coords": coords, "point_labels": labels})
    assert masks.shape == (2, 1, 256, 256) and iou.shape == (2, 1)
    np.testing.assert_allclose(masks, ref_low, atol=1e-3)
    np.testing.assert_allclose(iou, ref_iou, atol=1e-4)
    assert not np.allclose(masks[0], masks[1])  # each box gets its own mask


def test_same_recipe_is_up_to_date_and_another_is_not(pair: Path) -> None:
    assert se.is_current(pair, se.Sam2Recipe(seed=SEED))
    assert not se.is_current(pair, se.Sam2Recipe(seed=SEED + 1))


def test_a_changed_file_makes_the_pair_out_of_date(pair: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(pair, copy)
    with open(copy / se.DECODER_FILE, "ab") as f:
        f.write(b"\0")
    assert not se.is_current(copy, se.Sam2Recipe(seed=SEED))


def test_bad_variant_and_missing_checkpoint_are_explained(tmp_path: Path) -> None:
    with pytest.raises(se.Sam2ExportError, match="unknown SAM2 variant 'huge'; expected one of tiny"):
        se.build_model("huge", None, 0)
    with pytest.raises(se.Sam2ExportError, match="SAM2 checkpoint not found"):
        se.build_model("tiny", tmp_path / "sam2.1_hiera_tiny.pt", 0)
