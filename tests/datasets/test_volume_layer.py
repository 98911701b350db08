"""The volume layer: layouts of NIfTI cases, patient splits, slices, 3D test cases and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datasets.datamodule import SegmentationDataModule
from datasets.layouts import find_samples
from datasets.preflight import check_records
from datasets.preprocess import InferenceConfig, volume_slice_image
from datasets.records import kfold_split, subsample
from datasets.volume_cases import VOLUME_BATCH_KEY
from datasets.volume_slices import VolumeCache, VolumeConfig, canonical_shape, expand_to_slices, read_slice
from tests.datasets.volume_fixtures import (
    SHAPE,
    VOLUME_LAYOUT_WRITERS,
    make_acdc,
    make_msd,
    volume_pair,
    write_nifti,
)

INFERENCE = InferenceConfig(window=[0.0, 700.0], view="array")


@pytest.mark.parametrize("layout", sorted(VOLUME_LAYOUT_WRITERS))
def test_every_volume_layout_lists_labelled_cases_in_train(tmp_path, layout):
    root = VOLUME_LAYOUT_WRITERS[layout](tmp_path / layout)
    train = find_samples(layout, root, "train")
    assert train and all(r.image.is_file() and r.mask.is_file() and r.slice_index is None for r in train)
    assert find_samples(layout, root, "val") == [] and find_samples(layout, root, "test") == []


def test_msd_and_nnunet_names_and_their_errors(tmp_path):
    assert [r.id for r in find_samples("msd", make_msd(tmp_path / "a", nnunet=True), "train")] == [
        "organ_000", "organ_001", "organ_002"]  # fmt: skip
    root = make_msd(tmp_path / "b")
    (root / "labelsTr" / "organ_001.nii.gz").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"organ_001.nii.gz has no label: expected .*labelsTr/organ_001"
    ):
        find_samples("msd", root, "train")
    root = make_msd(tmp_path / "c", nnunet=True)
    write_nifti(root / "imagesTr" / "organ_000_0001.nii.gz", volume_pair(0)[0])
    with pytest.raises(ValueError, match="case 'organ_000' .* has 2 channel files"):
        find_samples("msd", root, "train")


def test_acdc_pairs_group_both_frames_of_a_patient_and_skip_4d(tmp_path):
    records = find_samples("nifti_pairs", make_acdc(tmp_path, patients=3), "train")
    assert [r.id for r in records][:2] == ["patient001_frame01", "patient001_frame12"]
    assert {r.group for r in records} == {"patient001", "patient002", "patient003"} and len(records) == 6
    write_nifti(tmp_path / "patient004" / "patient004_frame01.nii.gz", volume_pair(1)[0])
    with pytest.raises(FileNotFoundError, match="patient004_frame01.nii.gz has no label"):
        find_samples("nifti_pairs", tmp_path, "train")


def test_kfold_and_patient_fractions_never_split_a_patient(tmp_path):
    records = find_samples("nifti_pairs", make_acdc(tmp_path, patients=5), "train")
    for fold in range(5):
        train, val = kfold_split(records, 5, fold, seed=0)
        assert len(val) == 2 and len({r.group for r in val}) == 1
        assert not {r.group for r in train} & {r.group for r in val}
    slices = expand_to_slices(records, INFERENCE)
    kept = subsample(slices, 0.4, seed=1, by="units")
    assert len({r.group for r in kept}) == 2 and len(kept) == 2 * 2 * SHAPE[2]  # 2 patients x 2 frames
    assert len(subsample(slices, 0.1, seed=1)) == round(0.1 * len(slices))  # slices counted


def test_slices_are_read_on_the_canonical_grid_with_context(tmp_path):
    image, label = volume_pair(3)
    # Stored LPS (x and y flipped): the canonical slices must equal the RAS ones.
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    shift = np.eye(4)
    shift[:2, 3] = np.array(SHAPE[:2]) - 1
    affine = np.diag([1.5, 1.5, 3.0, 1.0]) @ shift @ flip
    write_nifti(tmp_path / "c" / "image.nii.gz", image[::-1, ::-1].copy(), affine=affine)
    write_nifti(tmp_path / "c" / "label.nii.gz", label[::-1, ::-1].copy(), affine=affine)
    case = find_samples("volumes", tmp_path, "train")[0]
    assert canonical_shape(case.image) == SHAPE
    slices = expand_to_slices([case], INFERENCE)
    assert [r.id for r in slices] == [f"c_z{z:03d}" for z in range(SHAPE[2])] and slices[2].group == "c"
    cache = VolumeCache(2, INFERENCE)
    img, mask = read_slice(cache, slices[2], channels=1, num_classes=3)
    np.testing.assert_allclose(img[..., 0], np.clip(image[:, :, 2], 0, 700) / 700, atol=1e-6)
    np.testing.assert_array_equal(mask, label[:, :, 2])
    stacked = volume_slice_image(image, 2, 0, "array", (0.0, 700.0), channels=3, context=1)
    np.testing.assert_allclose(stacked[..., 0], stacked[..., 1])  # slice -1 repeats slice 0
    np.testing.assert_allclose(stacked[..., 2], np.clip(image[:, :, 1], 0, 700) / 700, atol=1e-6)
    with pytest.raises(ValueError, match="context 1 stacks 3 slices but the network takes 1"):
        volume_slice_image(image, 2, 0, "array", (0.0, 700.0), channels=1, context=1)


def _case(tmp_path, image, label, affine_label=None):
    write_nifti(tmp_path / "x" / "image.nii.gz", image)
    if label is not None:
        write_nifti(tmp_path / "x" / "label.nii.gz", label, affine=affine_label)
    return find_samples("volumes", tmp_path, "train")


def test_preflight_names_both_files_of_a_label_off_the_grid_and_bad_ids(tmp_path):
    image, label = volume_pair(0)
    records = _case(tmp_path / "a", image, label[:, :, :4])
    (failure,) = check_records(records, 3, 1, progress=False)
    assert "shape (12, 10, 4)" in str(failure) and "shape (12, 10, 6)" in str(failure)
    assert "label.nii.gz" in str(failure) and "image.nii.gz" in str(failure)
    records = _case(tmp_path / "b", image, label, affine_label=np.diag([-1.5, 1.5, 3.0, 1.0]))
    (failure,) = check_records(records, 3, 1, progress=False)
    assert "does not lie on the grid" in str(failure) and "-1.5" in str(failure)
    (failure,) = check_records(_case(tmp_path / "c", image, label), 2, 1, progress=False)
    assert "holds ids [2]; expected 0..1" in str(failure)
    (failure,) = check_records(
        _case(tmp_path / "d", np.zeros((*SHAPE, 2), np.float32), None), 3, 1, progress=False
    )
    assert "expected a 3D volume" in str(failure)
    assert check_records(_case(tmp_path / "e", image, None), 3, 1, progress=False) == []  # unlabelled is fine


def _datamodule(root, **kwargs):
    args = {"root": str(root), "layout": "nifti_pairs", "num_classes": 3, "in_channels": 1, "image_size": 16,
            "batch_size": 4, "num_workers": 0, "n_folds": 3, "inference": INFERENCE}  # fmt: skip
    return SegmentationDataModule(**{**args, **kwargs})


def test_datamodule_serves_slices_for_training_and_whole_cases_for_test(tmp_path):
    root = make_acdc(tmp_path / "acdc", patients=3)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["patient001"], "val": ["patient002"], "test": ["patient003"]}))
    dm = _datamodule(root, split_file=str(split), volumes={"foreground_repeat": 2})
    dm.setup("fit")
    # 2 frames x 6 slices, the 4 slices with foreground (z 1..4) twice: 2 x (2 + 4 x 2) = 20
    assert len(dm.train_dataset) == 20 and len(dm.val_dataset) == 12
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 16, 16) and batch["mask"].shape == (4, 16, 16)
    case = next(iter(dm.test_dataloader()))
    assert case["id"] == "patient003_frame01" and case[VOLUME_BATCH_KEY].shape == (6, 1, 16, 16)
    assert case["label"].shape == SHAPE and case["spacing"] == (1.5, 1.5, 3.0)


def test_split_file_refuses_a_patient_on_both_sides(tmp_path):
    root = make_acdc(tmp_path / "acdc", patients=2)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["patient001_frame01"], "val": ["patient001_frame12"]}))
    with pytest.raises(ValueError, match=r"patients in train and also in val/test: \['patient001'\]"):
        _datamodule(root, split_file=str(split)).setup("fit")


def test_volume_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="volumes.foreground_repeat must be >= 1"):
        VolumeConfig(foreground_repeat=0)
    with pytest.raises(ValueError, match="volumes.percent_of must be 'slices' or 'patients'"):
        VolumeConfig(percent_of="cases")
    with pytest.raises(ValueError, match="data.volumes applies to volume layouts"):
        SegmentationDataModule(root=str(tmp_path), layout="folder", volumes={"slabs": 2})


def test_slabs_cut_a_scan_into_cases_covering_every_slice(tmp_path):
    root = make_acdc(tmp_path / "acdc", patients=1)
    dm = _datamodule(root, n_folds=2, volumes={"slabs": 3})
    served = dm.resolve_splits()
    cases = {r.id: r.slab for name in ("train", "val") for r in dm.cases[name]}
    assert (
        len(cases) == 6
        and cases["patient001_frame01_s0"] == (0, 2)
        and cases["patient001_frame01_s2"] == (4, 6)
    )
    # Each slab is its own group: its slices are served under it, 2 per slab.
    assert sum(len(served[name]) for name in ("train", "val")) == 2 * SHAPE[2]
    assert {r.group for r in served["val"]} == {r.id for r in dm.cases["val"]}


def test_reorient_false_slices_the_stored_axes_of_an_oblique_stack(tmp_path):
    # Stored axis 0 runs along world S (3 mm), axis 2 along R: the closest RAS order is (2, 1, 0).
    image, label = volume_pair(0)
    affine = np.array([[0, 0, 1.5, 0], [0, 1.5, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    case = _case(tmp_path, image, label, affine_label=affine)[0]
    write_nifti(case.image, image, affine=affine)
    assert canonical_shape(case.image) == (6, 10, 12) and canonical_shape(case.image, reorient=False) == SHAPE
    stored = InferenceConfig(window=[0.0, 700.0], view="array", reorient=False)
    assert (
        len(expand_to_slices([case], stored)) == SHAPE[2] and len(expand_to_slices([case], INFERENCE)) == 12
    )
    img, mask = read_slice(VolumeCache(1, stored), expand_to_slices([case], stored)[3], 1, 3)
    np.testing.assert_array_equal(mask, label[:, :, 3])  # the stored slice, not a reoriented one


def test_sp_generation_refuses_volume_layouts_instead_of_failing_per_file(tmp_path):
    # Regression: it listed the volumes as images and failed on every .nii.gz with an image-reader error.
    from datasets.superpixels.generation import collect_images

    with pytest.raises(ValueError, match="volume layout 'nifti_pairs' .* superpixels.source: cpu"):
        collect_images(make_acdc(tmp_path, patients=1), "nifti_pairs")
