from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from datasets.layouts import LAYOUTS, find_samples
from tests.datasets.conftest import (
    LAYOUT_WRITERS,
    make_folder_flat,
    make_isic2016,
    make_isic2017,
    make_isic2018,
    write_image,
    write_pair,
)


def ids(records):
    return [r.id for r in records]


# Layouts registered by other modules are tested with their own fixtures there.
PLUGIN_LAYOUT_TESTS = {
    "jsrt": "tests/datasets/test_jsrt.py",
    "jsrt_lungs": "tests/datasets/test_jsrt.py",
    "jsrt_heart": "tests/datasets/test_jsrt.py",
    "jsrt_clavicles": "tests/datasets/test_jsrt.py",
    "noisy": "tests/noisy/test_module.py",
    "msd": "tests/datasets/test_volume_layer.py",
    "nifti_pairs": "tests/datasets/test_volume_layer.py",
    "volumes": "tests/datasets/test_volume_layer.py",
}


def test_every_registered_layout_has_a_fixture_and_finds_train(tmp_path):
    assert set(LAYOUTS) == set(LAYOUT_WRITERS) | set(PLUGIN_LAYOUT_TESTS)
    for name, writer in LAYOUT_WRITERS.items():
        root = writer(tmp_path / name)
        train = find_samples(name, root, "train")
        assert train, name
        for record in train:
            assert record.image.is_file()
            assert record.mask is None or record.mask.is_file()


def test_folder_split_layout_pairs_every_naming(folder_root):
    train = find_samples("folder", folder_root, "train")
    assert ids(train) == ["a", "b", "c", "d", "e"]
    masks = {r.id: r.mask.name for r in train}
    assert masks == {"a": "a.png", "b": "b_mask.png", "c": "c_segmentation.png", "d": "d.png", "e": "e.png"}
    assert {r.id: r.image.suffix for r in train}["c"] == ".jpg"
    assert ids(find_samples("folder", folder_root, "val")) == ["v1", "v2"]
    assert ids(find_samples("folder", folder_root, "test")) == ["t1", "t2", "t3"]


def test_folder_split_layout_without_val_returns_empty(tmp_path):
    write_pair(tmp_path / "train/images", tmp_path / "train/masks", "x")
    assert find_samples("folder", tmp_path, "val") == []
    assert find_samples("folder", tmp_path, "test") == []


def test_folder_flat_layout_is_train_only(tmp_path):
    root = make_folder_flat(tmp_path, count=4)
    assert ids(find_samples("folder", root, "train")) == ["img00", "img01", "img02", "img03"]
    assert find_samples("folder", root, "val") == []
    assert find_samples("folder", root, "test") == []


def test_polyp_layout_maps_val_to_validation(tmp_path):
    root = LAYOUT_WRITERS["polyp"](tmp_path)
    assert ids(find_samples("polyp", root, "train")) == ["train0", "train1", "train2"]
    val = find_samples("polyp", root, "val")
    assert ids(val) == ["validation0", "validation1"]
    assert all(r.mask.parent == root / "validation/masks" for r in val)
    assert len(find_samples("polyp", root, "test")) == 2


@pytest.mark.parametrize("short", [False, True])
def test_isic2016_long_and_short_names(tmp_path, short):
    root = make_isic2016(tmp_path, short=short)
    train = find_samples("isic2016", root, "train")
    assert ids(train) == ["ISIC_Tr00000", "ISIC_Tr00001", "ISIC_Tr00002"]
    assert all(r.mask.name == f"{r.id}_Segmentation.png" for r in train)
    assert find_samples("isic2016", root, "val") == []
    assert ids(find_samples("isic2016", root, "test")) == ["ISIC_Te00000", "ISIC_Te00001"]


@pytest.mark.parametrize("short", [False, True])
def test_isic2017_ignores_superpixel_files(tmp_path, short):
    root = make_isic2017(tmp_path, short=short)
    for split, prefix in (("train", "ISIC_Tr"), ("val", "ISIC_Va"), ("test", "ISIC_Te")):
        records = find_samples("isic2017", root, split)
        assert ids(records) == [f"{prefix}00000", f"{prefix}00001"]
        assert all(r.image.suffix == ".jpg" and r.mask.name == f"{r.id}_segmentation.png" for r in records)


@pytest.mark.parametrize("short", [False, True])
def test_isic2018_is_train_only(tmp_path, short):
    root = make_isic2018(tmp_path, short=short)
    assert len(find_samples("isic2018", root, "train")) == 6
    assert find_samples("isic2018", root, "val") == []
    assert find_samples("isic2018", root, "test") == []


def test_ham10000_recursive_and_unlabelled(tmp_path):
    root = LAYOUT_WRITERS["ham10000"](tmp_path)
    train = find_samples("ham10000", root, "train")
    assert ids(train) == [f"ISIC_{i:07d}" for i in range(6)]
    assert all(r.mask is None for r in train)
    assert {r.image.parent.name for r in train} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert find_samples("ham10000", root, "val") == []


@pytest.mark.parametrize("layout", sorted(LAYOUT_WRITERS))
def test_missing_root_names_path_and_structure(tmp_path, layout):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as info:
        find_samples(layout, missing, "train")
    assert "expects" in str(info.value)


def test_root_without_expected_folders_explains_structure(tmp_path):
    with pytest.raises(FileNotFoundError, match="ISIC2018_Task1-2_Training_Input"):
        find_samples("isic2018", tmp_path, "train")


def test_image_without_mask_names_image_and_mask_folder(folder_root):
    orphan = write_image(folder_root / "train/images/zz.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        find_samples("folder", folder_root, "train")
    message = str(info.value)
    assert str(orphan) in message and str(folder_root / "train/masks") in message


def test_isic_image_without_mask(tmp_path):
    root = make_isic2018(tmp_path)
    (root / "ISIC2018_Task1_Training_GroundTruth/ISIC_0000002_segmentation.png").unlink()
    with pytest.raises(FileNotFoundError, match="ISIC_0000002_segmentation"):
        find_samples("isic2018", root, "train")


def test_empty_image_folder_names_directory(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "images"))):
        find_samples("folder", tmp_path, "train")


def test_duplicate_ids_are_rejected(tmp_path):
    root = make_folder_flat(tmp_path, count=2)
    write_image(root / "images/img00.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="img00"):
        find_samples("folder", root, "train")


def test_unknown_layout_and_split(tmp_path):
    with pytest.raises(ValueError, match="isic2017"):
        find_samples("isic217", tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        find_samples("folder", tmp_path, "validation")


def test_records_are_independent_of_listing_order(tmp_path):
    root = Path(make_folder_flat(tmp_path, count=5))
    first = find_samples("folder", root, "train")
    assert first == find_samples("folder", root, "train")
    assert ids(first) == sorted(ids(first))
