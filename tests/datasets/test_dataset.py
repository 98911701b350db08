from __future__ import annotations

import os
import re

import numpy as np
import pytest
import tifffile
import torch

from datasets.image_io import ImageReadError, read_image, read_mask, write_png_atomic
from datasets.records import SampleRecord, kfold_split, read_split_file, subsample
from datasets.segmentation_dataset import SegmentationDataset, collate_segmentation
from datasets.transforms import build_transforms
from tests.datasets.conftest import binary_mask, write_image, write_pair


def make_records(n):
    return [SampleRecord(id=f"s{i:02d}", image=f"/x/s{i:02d}.png", mask=None) for i in range(n)]


# ---------------------------------------------------------------- image_io


def test_read_image_8bit_rgb_values(tmp_path):
    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 0] = (255, 51, 0)
    image = read_image(write_image(tmp_path / "a.png", array), 3)
    assert image.dtype == np.float32 and image.shape == (2, 3, 3)
    np.testing.assert_allclose(image[0, 0], [1.0, 0.2, 0.0], atol=1e-6)


def test_read_image_16bit_png_and_tif(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], np.uint16)
    png = read_image(write_image(tmp_path / "a.png", array), 1)
    tifffile.imwrite(tmp_path / "a.tif", array)
    tif = read_image(tmp_path / "a.tif", 1)
    expected = (array / 65535.0)[:, :, None]
    np.testing.assert_allclose(png, expected, atol=1e-6)
    np.testing.assert_allclose(tif, expected, atol=1e-6)


def test_grey_to_three_channels_and_rgb_to_luminance(tmp_path):
    grey = read_image(write_image(tmp_path / "g.png", np.full((4, 4), 102, np.uint8)), 3)
    assert grey.shape == (4, 4, 3)
    np.testing.assert_allclose(grey, 0.4, atol=1e-6)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[1, 1] = (0, 0, 255)
    one = read_image(write_image(tmp_path / "c.png", rgb), 1)
    assert one.shape == (2, 2, 1)
    np.testing.assert_allclose(one[0, 0, 0], 0.299, atol=1e-6)
    np.testing.assert_allclose(one[1, 1, 0], 0.114, atol=1e-6)


def test_rgba_alpha_is_dropped(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 10
    image = read_image(write_image(tmp_path / "a.png", rgba), 3)
    np.testing.assert_allclose(image[0, 0], [0, 1, 0])


def test_read_jpg(tmp_path):
    image = read_image(write_image(tmp_path / "a.jpg", np.full((8, 8, 3), 128, np.uint8)), 3)
    assert image.shape == (8, 8, 3)
    assert abs(float(image.mean()) - 128 / 255) < 0.02


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=re.escape(str(bad))):
        read_image(bad, 3)
    with pytest.raises(ImageReadError, match=re.escape(str(bad))):
        read_mask(bad, 2)
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png", 3)
    assert issubclass(ImageReadError, ValueError)


def test_read_mask_binary_and_index(tmp_path):
    binary = read_mask(write_image(tmp_path / "b.png", np.array([[0, 255], [255, 0]], np.uint8)), 2)
    assert binary.dtype == np.int64
    np.testing.assert_array_equal(binary, [[0, 1], [1, 0]])
    index = read_mask(write_image(tmp_path / "i.png", np.array([[0, 1], [2, 3]], np.uint8)), 4)
    np.testing.assert_array_equal(index, [[0, 1], [2, 3]])
    rgb = np.repeat(np.array([[0, 2]], np.uint8)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(read_mask(write_image(tmp_path / "rgb.png", rgb), 3), [[0, 2]])


def test_read_mask_rejects_out_of_range_labels(tmp_path):
    path = write_image(tmp_path / "m.png", np.array([[0, 1], [2, 5]], np.uint8))
    with pytest.raises(ValueError) as info:
        read_mask(path, 2)
    message = str(info.value)
    assert str(path) in message and "2, 5" in message and "num_classes=2" in message
    mixed = write_image(tmp_path / "mixed.png", np.array([[0, 1, 255]], np.uint8))
    with pytest.raises(ValueError, match="255"):
        read_mask(mixed, 2)


def test_read_mask_rejects_colour_mask(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (1, 0, 0)
    with pytest.raises(ValueError, match="channels"):
        read_mask(write_image(tmp_path / "c.png", rgb), 3)


def test_jpeg_mask_is_binarised_only_for_two_classes(tmp_path):
    path = write_image(tmp_path / "m.jpg", binary_mask((16, 16)))
    np.testing.assert_array_equal(read_mask(path, 2), binary_mask((16, 16)) // 255)
    with pytest.raises(ValueError, match="lossy"):
        read_mask(path, 3)


def test_write_png_atomic_roundtrip(tmp_path):
    array = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    target = tmp_path / "sub" / "x.png"
    write_png_atomic(target, array)
    assert os.listdir(target.parent) == ["x.png"]
    np.testing.assert_array_equal(read_mask(target, 60001), array)
    with pytest.raises(ValueError, match="dtype"):
        write_png_atomic(target, array.astype(np.float32))


# ---------------------------------------------------------------- records


def test_kfold_disjoint_covering_deterministic():
    records = make_records(11)
    vals = []
    for fold in range(5):
        train, val = kfold_split(records, 5, fold, seed=3)
        assert not set(train) & set(val)
        assert set(train) | set(val) == set(records)
        assert kfold_split(list(reversed(records)), 5, fold, seed=3) == (train, val)
        vals.append(val)
    assert sorted(r.id for v in vals for r in v) == [r.id for r in records]
    assert sorted(len(v) for v in vals) == [2, 2, 2, 2, 3]
    assert kfold_split(records, 5, 0, seed=4)[1] != vals[0]


def test_kfold_errors():
    with pytest.raises(ValueError, match="fold"):
        kfold_split(make_records(5), 5, 5, 0)
    with pytest.raises(ValueError, match="n_folds"):
        kfold_split(make_records(3), 5, 0, 0)


def test_subsample_deterministic_by_seed():
    records = make_records(20)
    part = subsample(records, 0.25, seed=1)
    assert len(part) == 5 and set(part) <= set(records)
    assert subsample(list(reversed(records)), 0.25, seed=1) == part
    assert subsample(records, 0.25, seed=2) != part
    assert len(subsample(records, 0.001, seed=1)) == 1
    assert subsample(records, 1.0, seed=1) == records
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="percent"):
            subsample(records, bad, seed=1)


def test_read_split_file(tmp_path):
    path = tmp_path / "split.json"
    path.write_text('{"train": ["a", "b"], "val": ["c"], "test": ["c"]}')
    assert read_split_file(path) == {"train": ["a", "b"], "val": ["c"], "test": ["c"]}
    path.write_text('{"train": ["a"], "val": ["a"]}')
    with pytest.raises(ValueError, match="'a'"):
        read_split_file(path)
    path.write_text('{"training": ["a"]}')
    with pytest.raises(ValueError, match="training"):
        read_split_file(path)


# ---------------------------------------------------------------- transforms


def test_build_transforms_rejects_bad_specs():
    with pytest.raises(ValueError, match="HorizontalFlip"):
        build_transforms([{"name": "HorizontalFlp"}], 16, "train")
    with pytest.raises(ValueError, match="unknown arguments"):
        build_transforms([{"name": "HorizontalFlip", "prob": 1.0}], 16, "train")
    with pytest.raises(ValueError, match="stage"):
        build_transforms(None, 16, "fit")


def test_val_transform_only_resizes(tmp_path):
    transform = build_transforms([{"name": "HorizontalFlip", "p": 1.0}], (8, 12), "val")
    image = np.random.default_rng(0).random((8, 12, 3), dtype=np.float32)
    np.testing.assert_array_equal(transform(image=image)["image"], image)


def _index_image_record(tmp_path, size=(16, 16)):
    # Grey image whose value is the pixel index (fits 8 bits for 16x16).
    values = np.arange(size[0] * size[1], dtype=np.uint8).reshape(size)
    image = write_image(tmp_path / "idx.png", values)
    return SampleRecord(id="idx", image=image, mask=None), values


def _index_map(record, image):
    return {"superpixels": np.rint(image[:, :, 0] * 255).astype(np.int64) + 1}


def test_extra_map_follows_horizontal_flip(tmp_path):
    record, values = _index_image_record(tmp_path)
    transform = build_transforms([{"name": "HorizontalFlip", "p": 1.0}], 16, "train")
    sample = SegmentationDataset([record], 2, 1, transform, "train", extra_maps=_index_map)[0]
    assert sample["superpixels"].dtype == torch.int64
    np.testing.assert_array_equal(sample["superpixels"].numpy(), np.fliplr(values).astype(np.int64) + 1)


def test_extra_map_stays_aligned_under_affine(tmp_path):
    record, values = _index_image_record(tmp_path)
    spec = [
        {"name": "HorizontalFlip", "p": 1.0},
        {"name": "Affine", "rotate": (25, 25), "scale": (1.2, 1.2), "interpolation": 0, "p": 1.0},
    ]
    transform = build_transforms(spec, 16, "train")
    sample = SegmentationDataset([record], 2, 1, transform, "train", extra_maps=_index_map)[0]
    spmap = sample["superpixels"].numpy()
    pixel = np.rint((sample["image"][0].numpy() * 0.5 + 0.5) * 255).astype(np.int64)
    inside = spmap > 0
    assert inside.mean() > 0.5
    assert not np.array_equal(spmap, values.astype(np.int64) + 1)
    np.testing.assert_array_equal(spmap[inside], pixel[inside] + 1)


# ---------------------------------------------------------------- dataset


def _pair_record(tmp_path, stem, size, grey=False, mask=None):
    image, mask_path = write_pair(tmp_path / "im", tmp_path / "ma", stem, size, grey=grey, mask=mask)
    return SampleRecord(id=stem, image=image, mask=mask_path)


def test_sample_keys_types_and_normalisation(tmp_path):
    record = _pair_record(tmp_path, "a", (12, 10))
    dataset = SegmentationDataset([record], 2, 3, build_transforms(None, (12, 10), "val"), "val")
    sample = dataset[0]
    assert set(sample) == {"image", "mask", "id", "index"}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 12, 10)
    raw = read_image(record.image, 3)
    np.testing.assert_allclose(sample["image"].numpy(), raw.transpose(2, 0, 1) * 2 - 1, atol=1e-6)
    assert sample["mask"].dtype == torch.int64
    np.testing.assert_array_equal(sample["mask"].numpy(), binary_mask((12, 10)) // 255)
    assert sample["id"] == "a" and sample["index"] == 0


def test_grey_file_to_three_channels_and_rgb_to_one(tmp_path):
    grey = _pair_record(tmp_path, "g", (8, 8), grey=True)
    rgb = _pair_record(tmp_path, "c", (8, 8))
    three = SegmentationDataset([grey], 2, 3, build_transforms(None, 8, "val"), "val")[0]["image"]
    assert three.shape == (3, 8, 8)
    assert torch.equal(three[0], three[1]) and torch.equal(three[0], three[2])
    one = SegmentationDataset([rgb], 2, 1, build_transforms(None, 8, "val"), "val")[0]["image"]
    assert one.shape == (1, 8, 8)


def test_mask_size_mismatch_names_both_files(tmp_path):
    record = _pair_record(tmp_path, "a", (16, 16), mask=binary_mask((8, 16)))
    dataset = SegmentationDataset([record], 2, 3, build_transforms(None, 16, "val"), "val")
    with pytest.raises(ValueError) as info:
        dataset[0]
    message = str(info.value)
    assert str(record.image) in message and str(record.mask) in message
    assert "(8, 16)" in message and "(16, 16)" in message


def test_label_out_of_range_and_corrupt_image_in_getitem(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[0, 0] = 4
    record = _pair_record(tmp_path, "a", (8, 8), mask=labels)
    with pytest.raises(ValueError, match=re.escape(str(record.mask))):
        SegmentationDataset([record], 3, 3, None, "val")[0]
    corrupt = _pair_record(tmp_path, "b", (8, 8))
    corrupt.image.write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match=re.escape(str(corrupt.image))):
        SegmentationDataset([corrupt], 2, 3, None, "val")[0]


def test_same_seed_same_samples_and_epochs_differ(tmp_path):
    records = [_pair_record(tmp_path, f"s{i}", (16, 16)) for i in range(3)]

    def dataset(seed):
        return SegmentationDataset(records, 2, 3, build_transforms(None, 16, "train"), "train", seed=seed)

    first, second = dataset(7), dataset(7)
    samples = [first[i] for i in range(3)]
    for i in reversed(range(3)):  # order must not matter
        assert torch.equal(second[i]["image"], samples[i]["image"])
        assert torch.equal(second[i]["mask"], samples[i]["mask"])
    first.set_epoch(1)
    assert any(not torch.equal(first[i]["image"], samples[i]["image"]) for i in range(3))
    assert any(not torch.equal(dataset(8)[i]["image"], samples[i]["image"]) for i in range(3))
    # The (index, epoch) form used by the sampler equals set_epoch.
    assert torch.equal(second[(2, 1)]["image"], first[2]["image"])


def test_test_stage_keeps_original_masks_for_mixed_sizes(tmp_path):
    sizes = [(16, 16), (8, 12), (20, 10)]
    records = [_pair_record(tmp_path, f"s{i}", size) for i, size in enumerate(sizes)]
    dataset = SegmentationDataset(records, 2, 3, build_transforms(None, 16, "test"), "test")
    batch = collate_segmentation([dataset[i] for i in range(3)])
    assert batch["image"].shape == (3, 3, 16, 16) and batch["mask"].shape == (3, 16, 16)
    assert batch["orig_size"] == sizes
    assert [tuple(m.shape) for m in batch["orig_mask"]] == sizes
    for mask, size in zip(batch["orig_mask"], sizes, strict=True):
        np.testing.assert_array_equal(mask.numpy(), binary_mask(size) // 255)
    assert batch["id"] == ["s0", "s1", "s2"] and batch["index"].tolist() == [0, 1, 2]


def test_unlabelled_records_have_no_mask(tmp_path):
    image = write_image(tmp_path / "u.jpg", np.zeros((8, 8, 3), np.uint8))
    sample = SegmentationDataset([SampleRecord("u", image, None)], 2, 3, None, "test")[0]
    assert "mask" not in sample and "orig_mask" not in sample and sample["orig_size"] == (8, 8)


def test_collate_rejects_mismatched_shapes():
    a = {"image": torch.zeros(3, 4, 4), "id": "a", "index": 0}
    b = {"image": torch.zeros(3, 5, 4), "id": "b", "index": 1}
    with pytest.raises(ValueError, match="image"):
        collate_segmentation([a, b])
    with pytest.raises(ValueError, match="keys"):
        collate_segmentation([a, {"image": torch.zeros(3, 4, 4), "id": "c"}])


def test_extra_map_name_and_shape_checked(tmp_path):
    record = _pair_record(tmp_path, "a", (8, 8))
    with pytest.raises(ValueError, match="reserved"):
        SegmentationDataset([record], 2, 3, None, "val", extra_maps=lambda r, im: {"mask": im[..., 0]})[0]
    with pytest.raises(ValueError, match="superpixels"):
        SegmentationDataset(
            [record], 2, 3, None, "val", extra_maps=lambda r, im: {"superpixels": np.zeros((4, 4))}
        )[0]
