"""The synthetic frame generator: reproducible from a seed, and its labels describe what is drawn."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from rvm_toolchain import synth

SIZE = (320, 240)


def test_same_seed_and_index_give_the_same_frame_and_labels() -> None:
    a, b = synth.render(7, 3, SIZE), synth.render(7, 3, SIZE)
    assert np.array_equal(a.image, b.image)
    assert a.boxes == b.boxes


def test_another_seed_gives_another_frame() -> None:
    assert not np.array_equal(synth.render(7, 3, SIZE).image, synth.render(8, 3, SIZE).image)


def test_a_frame_does_not_depend_on_how_many_are_made() -> None:
    frames = list(synth.samples(5, "val", 3, SIZE))
    index, last = frames[-1]
    assert np.array_equal(last.image, synth.render(5, index, SIZE).image)


def test_splits_never_share_a_frame() -> None:
    """No frame of one split is a frame of another: the splits use disjoint index ranges."""
    from rvm_toolchain import lab

    firsts = {split: [i for i, _ in synth.samples(0, split, 2, (64, 48))] for split in synth.SPLIT_OFFSETS}
    all_indices = [i for indices in firsts.values() for i in indices]
    assert len(set(all_indices)) == len(all_indices)
    offsets = sorted(synth.SPLIT_OFFSETS.values())
    largest_split = max(lab.N_TRAIN, lab.N_VAL, lab.N_CALIB)
    assert all(b - a > largest_split for a, b in itertools.pairwise(offsets))


def test_unknown_split_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        next(synth.samples(0, "holdout", 1))


@pytest.fixture(scope="module")
def many() -> list[synth.Sample]:
    return [synth.render(11, i, SIZE) for i in range(40)]


def test_each_box_is_the_tight_extent_of_its_visible_object(many: list[synth.Sample]) -> None:
    checked = 0
    for s in many:
        assert len(s.boxes) == len(s.masks)
        for box, mask in zip(s.boxes, s.masks, strict=True):
            ys, xs = np.nonzero(mask)
            assert (box.x1, box.y1, box.x2, box.y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert 0 <= box.x1 < box.x2 <= SIZE[0] and 0 <= box.y1 < box.y2 <= SIZE[1]
            assert box.cls in range(len(synth.CLASSES))
            checked += 1
        if len(s.masks) > 1:  # visible pixels belong to one object only
            assert int(np.sum(np.stack(s.masks), axis=0).max()) == 1
    assert checked > 30


def test_objects_are_visible_in_the_image(many: list[synth.Sample]) -> None:
    """Inside a labelled object the image differs from the surroundings just outside its box."""
    contrasts = []
    for s in many:
        for box, mask in zip(s.boxes, s.masks, strict=True):
            x1, y1, x2, y2 = int(box.x1), int(box.y1), int(box.x2), int(box.y2)
            ring = np.zeros_like(mask)
            ring[max(0, y1 - 6) : y2 + 6, max(0, x1 - 6) : x2 + 6] = True
            ring[y1:y2, x1:x2] = False
            for other in s.masks:
                ring &= ~other
            if ring.sum() < 50:
                continue
            inside = s.image[mask].astype(float).mean(axis=0)
            outside = s.image[ring].astype(float).mean(axis=0)
            contrasts.append(np.abs(inside - outside).max())
    assert np.median(contrasts) > 15


def test_the_stream_has_every_class_cut_objects_and_empty_frames() -> None:
    samples = [synth.render(0, i, SIZE) for i in range(120)]
    classes = Counter(b.cls for s in samples for b in s.boxes)
    assert set(classes) == {0, 1, 2}
    assert min(classes.values()) >= 15
    cut = [
        b for s in samples for b in s.boxes if b.x1 == 0 or b.y1 == 0 or b.x2 == SIZE[0] or b.y2 == SIZE[1]
    ]
    assert len(cut) >= 5
    assert any(not s.boxes for s in samples)
    assert any(len(s.boxes) >= 2 for s in samples)


def test_written_data_set_matches_the_rendered_labels(tmp_path: Path) -> None:
    data_yaml = synth.write_dataset(tmp_path, seed=3, n_train=4, n_val=2)
    text = data_yaml.read_text()
    assert "train: images/train" in text and "val: images/val" in text
    assert "0: bottle" in text and "1: can" in text and "2: other" in text
    images = sorted((tmp_path / "images" / "val").glob("*.png"))
    assert len(images) == 2 and len(list((tmp_path / "images" / "train").glob("*.png"))) == 4
    for img_path in images:
        index = int(img_path.stem.split("_")[1])
        sample = synth.render(3, index)
        assert np.array_equal(cv2.imread(str(img_path)), sample.image)  # PNG: lossless
        lines = (tmp_path / "labels" / "val" / f"{img_path.stem}.txt").read_text().splitlines()
        assert len(lines) == len(sample.boxes)
        h, w = sample.image.shape[:2]
        for line, box in zip(lines, sample.boxes, strict=True):
            cls, cx, cy, bw, bh = line.split()
            assert int(cls) == box.cls
            assert float(cx) * w == pytest.approx((box.x1 + box.x2) / 2, abs=0.01)
            assert float(cy) * h == pytest.approx((box.y1 + box.y2) / 2, abs=0.01)
            assert float(bw) * w == pytest.approx(box.x2 - box.x1, abs=0.01)
            assert float(bh) * h == pytest.approx(box.y2 - box.y1, abs=0.01)
