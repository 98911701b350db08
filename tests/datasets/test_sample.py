"""Tests of the embedded real sample (datasets/sample) and of the script that rebuilds it."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from datasets.sample import (
    SAMPLE_ROOT,
    abdomen_ct_root,
    abdomen_mr_root,
    build_sample,
    nuclei_root,
    sources,
    volumes_root,
)
from datasets.sample.derive import (
    body_bbox,
    fit_to_square,
    organ_z_range,
    remap_labels,
    scale_mr,
    split_blocks,
    stretch_percentile,
    to_display,
    window_ct,
)

SPLITS = ("train", "val", "test")
SUBSETS = {"nuclei": (nuclei_root, {0, 255}), "abdomen_ct": (abdomen_ct_root, set(range(5))),
           "abdomen_mr": (abdomen_mr_root, set(range(5)))}  # fmt: skip


def _pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    images = sorted((root / split / "images").glob("*.png"))
    return [(p, root / split / "masks" / p.name) for p in images]


# ---- the committed sample -------------------------------------------------------------------------


@pytest.mark.parametrize("subset", sorted(SUBSETS))
def test_every_split_has_matching_image_mask_pairs(subset):
    root_fn, allowed = SUBSETS[subset]
    for split in SPLITS:
        pairs = _pairs(root_fn(), split)
        assert pairs, f"{subset}/{split} is empty"
        masks = {p.name for p in (root_fn() / split / "masks").glob("*.png")}
        assert masks == {m.name for _, m in pairs}, f"{subset}/{split}: images and masks differ"
        for image_path, mask_path in pairs:
            image, mask = Image.open(image_path), Image.open(mask_path)
            assert image.mode == mask.mode == "L"
            assert image.size == mask.size == (128, 128)
            assert set(np.unique(np.asarray(mask)).tolist()) <= allowed, mask_path


def test_labels_json_matches_files():
    meta = json.loads((SAMPLE_ROOT / "labels.json").read_text())
    assert meta["nuclei"] == {"0": "background", "1": "nucleus"}
    expected = {"0": "background", "1": "liver", "2": "spleen", "3": "kidney_right", "4": "kidney_left"}
    assert meta["abdomen_ct"] == meta["abdomen_mr"] == expected
    for subset, (root_fn, _) in SUBSETS.items():
        counts = {s: len(_pairs(root_fn(), s)) for s in SPLITS}
        assert meta["split_sizes"][subset] == counts
    assert meta["split_sizes"]["nuclei"] == {"train": 10, "val": 3, "test": 3}


def test_every_abdomen_ct_split_contains_liver():
    for split in SPLITS:
        masks = [np.asarray(Image.open(m)) for _, m in _pairs(abdomen_ct_root(), split)]
        assert any((m == 1).any() for m in masks), f"abdomen_ct/{split} has no liver pixel"


def test_abdominal_splits_do_not_share_slices():
    for root_fn in (abdomen_ct_root, abdomen_mr_root):
        names = [p.name for s in SPLITS for p, _ in _pairs(root_fn(), s)]
        assert len(names) == len(set(names))


@pytest.mark.parametrize("modality", ["ct", "mr"])
def test_volumes_load_with_consistent_geometry(modality):
    image = nib.load(volumes_root() / modality / "image.nii.gz")
    label = nib.load(volumes_root() / modality / "label.nii.gz")
    assert image.shape == label.shape and len(image.shape) == 3
    assert max(image.shape[:2]) <= 128
    np.testing.assert_allclose(image.affine, label.affine)
    assert all(z > 0 for z in image.header.get_zooms())
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    values = np.unique(np.asarray(label.dataobj))
    assert values.min() == 0 and values.max() == 4 and set(values.tolist()) <= set(range(5))
    assert (volumes_root() / modality / "image.nii.gz").stat().st_size < 1_000_000


# ---- pure derivation functions (hand-computed values) ---------------------------------------------


def test_window_ct_hand_values():
    hu = np.array([-1000, -125, 75, 275, 1000])
    np.testing.assert_array_equal(window_ct(hu), [0, 0, 128, 255, 255])


def test_scale_mr_clips_top_and_negatives():
    vol = np.arange(-10, 1000, dtype=np.int16)
    out = scale_mr(vol)
    assert out.dtype == np.uint8 and out[:11].max() == 0 and out[-1] == 255
    hi = np.percentile(vol, 99.5)
    assert out[vol.tolist().index(500)] == round(500 / hi * 255)
    with pytest.raises(ValueError, match="percentile"):
        scale_mr(np.zeros((4, 4)))


def test_stretch_percentile_range_and_constant_error():
    out = stretch_percentile(np.linspace(0, 1, 1001), 0, 100)
    assert out[0] == 0 and out[-1] == 255 and out[500] == 128
    with pytest.raises(ValueError, match="constant"):
        stretch_percentile(np.ones((3, 3)))


def test_remap_labels_keeps_four_organs_only():
    seg = np.array([0, 1, 2, 3, 4, 5, 7, 117])
    np.testing.assert_array_equal(remap_labels(seg, {5: 1, 1: 2, 2: 3, 3: 4}), [0, 2, 3, 4, 0, 1, 0, 0])


def test_to_display_puts_patient_right_left_and_anterior_top():
    ras = np.zeros((4, 3), dtype=np.uint8)
    ras[3, 2] = 1  # most right (x max) and most anterior (y max)
    out = to_display(ras)
    assert out.shape == (3, 4) and out[0, 0] == 1


def test_fit_to_square_pads_centred_and_shrinks_keeping_aspect():
    out = fit_to_square(np.full((4, 2), 7, np.uint8), 8, order=0)
    assert out.shape == (8, 8) and out[2:6, 3:5].min() == 7 and out.sum() == 7 * 8
    big = fit_to_square(np.full((256, 128), 3, np.uint8), 128, order=0)
    assert (big == 3).sum() == 128 * 64 and (big[:, 32:96] == 3).all()


def test_split_blocks_contiguous_and_counts():
    roles = split_blocks(30, 3, (0.7, 0.15, 0.15), seed=0)
    for b in range(10):
        assert len(set(roles[3 * b : 3 * b + 3])) == 1
    assert [roles.count(s) for s in SPLITS] == [18, 6, 6]
    assert split_blocks(30, 3, (0.7, 0.15, 0.15), seed=0) == roles
    with pytest.raises(ValueError, match="blocks"):
        split_blocks(5, 3, (0.7, 0.15, 0.15), seed=0)


def test_bbox_and_z_range_errors_on_empty():
    with pytest.raises(ValueError, match="threshold"):
        body_bbox(np.zeros((4, 4, 2)), threshold=1.0)
    with pytest.raises(ValueError, match="foreground"):
        organ_z_range(np.zeros((4, 4, 2), np.uint8))


# ---- derive_* and the build: determinism and geometry on synthetic data ---------------------------


def _synthetic_ct(shape=(40, 30, 12)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = np.full(shape, -1000, np.int16)
    image[4:36, 3:27] = rng.integers(-100, 200, size=(32, 24, shape[2]))
    seg = np.zeros(shape, np.uint8)
    seg[8:20, 8:20, 1:11] = 5
    seg[24:30, 10:16, 2:9] = 1
    seg[10:14, 20:24, 3:7] = 2
    seg[26:30, 20:24, 3:7] = 3
    seg[30:33, 5:8, :] = 7  # another organ, must vanish
    return image, seg


def test_derive_slices_and_volume_are_deterministic():
    image, seg = _synthetic_ct()
    label = remap_labels(seg, {5: 1, 1: 2, 2: 3, 3: 4})
    runs = [build_sample.derive_volume(image, label, np.eye(4), -500.0) for _ in range(2)]
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
    vol, lab, _ = runs[0]
    slices = [build_sample.derive_slices(window_ct(vol), lab, "ct") for _ in range(2)]
    for split in SPLITS:
        assert slices[0][split], split
        for (n1, i1, m1), (n2, i2, m2) in zip(slices[0][split], slices[1][split], strict=True):
            assert n1 == n2
            np.testing.assert_array_equal(i1, i2)
            np.testing.assert_array_equal(m1, m2)
    assert sum(len(v) for v in slices[0].values()) == 10  # z 1..10 hold liver


def test_derive_volume_crop_and_shrink_update_the_affine():
    image = np.zeros((256, 256, 4), np.int16)
    label = np.zeros((256, 256, 4), np.uint8)
    label[100:150, 100:150, 1:3] = 1
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (10, 20, 30)
    vol, lab, out = build_sample.derive_volume(image, label, affine, -500.0, max_inplane=128)
    assert vol.shape == lab.shape == (128, 128, 2) and vol.dtype == np.int16
    expected = np.diag([2.0, 2.0, 2.0, 1.0])
    expected[:3, 3] = (10.5, 20.5, 32.0)  # shrink by 2 moves the first centre half a voxel; crop z by 1
    np.testing.assert_allclose(out, expected)
    assert lab[50:75, 50:75, :].all() and lab.sum() == 25 * 25 * 2


def test_derive_nuclei_tiles_and_splits():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (512, 512)).astype(np.uint16)
    instances = np.zeros((512, 512), np.uint16)
    instances[10:30, 10:30], instances[300:320, 400:450] = 1, 2
    out = build_sample.derive_nuclei(image, instances)
    assert [len(out[s]) for s in SPLITS] == [10, 3, 3]
    ids = [n for s in SPLITS for n, _, _ in out[s]]
    assert sorted(ids) == sorted(f"r{r}_c{c}" for r in range(4) for c in range(4))
    masks = {n: m for s in SPLITS for n, _, m in out[s]}
    assert masks["r0_c0"][10:30, 10:30].min() == 255 and masks["r0_c0"].sum() == 255 * 400
    with pytest.raises(ValueError, match="tiles"):
        build_sample.derive_nuclei(image, instances, counts=(10, 3, 2))


def _nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(data, affine).to_bytes())


def _fake_archives(folder: Path) -> tuple[Path, Path]:
    """Tiny stand-ins for the TotalSegmentator sdist and the stardist wheel, same member names."""
    image, seg = _synthetic_ct()
    lps = np.diag([-3.0, -3.0, 3.0, 1.0])
    organs = "{1: 'spleen', 2: 'kidney_right', 3: 'kidney_left', 5: 'liver'}"
    class_map = f"class_map = {{'total': {organs}, 'total_mr': {organs}}}\nlater = 1\n"
    members = {
        sources.TS_CT: _nifti_bytes(image, lps),
        sources.TS_CT_SEG: _nifti_bytes(seg, lps),
        sources.TS_MR: _nifti_bytes((image + 1000).astype(np.int16), lps),
        sources.TS_MR_SEG: _nifti_bytes(seg, lps),
        sources.TS_CLASS_MAP: class_map.encode(),
    }
    sdist = folder / "totalsegmentator-2.18.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    wheel = folder / "stardist-0.9.2-py3-none-any.whl"
    img = np.random.default_rng(1).integers(0, 200, (512, 512)).astype(np.uint16)
    mask = np.zeros((512, 512), np.uint16)
    mask[5:40, 5:40] = 1
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, arr in ((sources.SD_IMAGE, img), (sources.SD_MASK, mask)):
            buf = io.BytesIO()
            tifffile.imwrite(buf, arr)
            archive.writestr(name, buf.getvalue())
    return sdist, wheel


def test_build_from_archives_is_byte_identical_and_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MEMBER_SHA256", {})  # fakes differ from the real members
    sdist, wheel = _fake_archives(tmp_path)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        build_sample.main(["--totalseg-sdist", str(sdist), "--stardist-wheel", str(wheel), "--out", str(out)])
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    meta = json.loads((outs[0] / "labels.json").read_text())
    sizes = meta["split_sizes"]["abdomen_ct"]
    assert sum(sizes.values()) == 10 and min(sizes.values()) >= 1  # z 1..10 hold liver: 4 blocks of <= 3
    manifest = json.loads((outs[0] / "volumes" / "manifest.json").read_text())
    assert manifest["windows"] == {"CT": [-125.0, 275.0], "MR": None}
    assert {sid: r["modality"] for sid, r in manifest["scans"].items()} == {"ct": "CT", "mr": "MR"}
    ct = nib.load(outs[0] / "volumes" / "ct" / "label.nii.gz")
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
    assert not any(p.name.startswith(".") for p in outs[0].rglob("*"))  # no temp left behind


def test_build_rejects_a_changed_source(tmp_path):
    sdist, wheel = _fake_archives(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        build_sample.main(
            ["--totalseg-sdist", str(sdist), "--stardist-wheel", str(wheel), "--out", str(tmp_path)]
        )


def test_class_map_check_names_the_renumbered_id():
    source = b"class_map = {'total': {1: 'spleen', 5: 'stomach'}}\nother = 1\n"
    with pytest.raises(ValueError, match="id 5 is 'stomach'"):
        sources.check_organ_ids(sources.totalseg_class_map(source, "total"), {1: "spleen", 5: "liver"})
    with pytest.raises(KeyError, match="total_mr"):
        sources.totalseg_class_map(source, "total_mr")


def test_main_requires_exactly_one_source_mode(tmp_path):
    with pytest.raises(SystemExit):
        build_sample.main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        build_sample.main(["--download", "--stardist-wheel", "x.whl"])
