"""The prepared manifest as the volume reader sees it: windows per modality, label maps, class range."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from datasets.fewshot.datamodule import FewShotDataModule, to_slices
from datasets.sample import volumes_root
from datasets.volumes.intensity import zscore_volume
from datasets.volumes.io import Volume, write_nifti
from datasets.volumes.manifest import MANIFEST_NAME, read_manifest, scan_windows
from datasets.volumes.prepare import write_prepared

NAMES = {"liver": 1, "spleen": 2}


def _prepared(root, windows, modalities=("CT", "MR")):
    """Two labelled scans, ``a`` (first modality) and ``b`` (second), HU-like intensities."""
    rng = np.random.default_rng(0)
    scans = {}
    for sid in ("a", "b"):
        img = rng.uniform(-1000, 1000, (16, 16, 8)).astype(np.float32)
        lab = np.zeros((16, 16, 8), np.int16)
        lab[4:9, 4:9, 2:6] = 1
        lab[10:13, 10:13, 3:5] = 2
        scans[sid] = (Volume(img, np.eye(4)), Volume(lab, np.eye(4)))
    return write_prepared(root, scans, NAMES, dict(zip(("a", "b"), modalities, strict=True)), windows)


def _dm(root, **kw):
    args = dict(root=str(root), organs=["liver", "spleen"], image_size=16, episodes_per_epoch=2,
                split={"support": "a", "queries": ["b"], "train": ["b"]}, min_fg_pixels=1,
                superpixel_min_size=5)  # fmt: skip
    return FewShotDataModule(**{**args, **kw})


def test_the_window_of_each_scans_modality_is_applied(tmp_path):
    root = _prepared(tmp_path / "p", {"CT": [-100.0, 100.0], "MR": None})
    dm = _dm(root)
    dm.setup("test")
    raw_a = np.asarray(nib.load(str(root / "a" / "image.nii.gz")).dataobj)
    expected = to_slices(zscore_volume(np.clip(raw_a, -100.0, 100.0)), 16, order=1, fill=0.0)
    np.testing.assert_allclose(dm.images["a"], expected.astype(np.float32), atol=1e-5)  # CT: clipped
    raw_b = np.asarray(nib.load(str(root / "b" / "image.nii.gz")).dataobj)
    np.testing.assert_allclose(
        dm.images["b"], to_slices(zscore_volume(raw_b), 16, 1, 0.0), atol=1e-5
    )  # MR: none
    # the DataModule's clip_windows override the manifest's, per modality
    over = _dm(root, clip_windows={"mr": [0.0, 10.0]})
    over.setup("test")
    assert np.unique(over.images["b"]).size < np.unique(dm.images["b"]).size


def test_a_scan_with_no_window_for_its_modality_is_an_error(tmp_path):
    root = _prepared(tmp_path / "p", {"CT": [-125.0, 275.0]})  # nothing for MR
    with pytest.raises(ValueError, match=r"scan 'b' of .* is MR but no window is set for MR .*\{MR: null\}"):
        _dm(root).setup("test")
    _dm(root, clip_windows={"MR": None}).setup("test")  # stated explicitly: fine
    with pytest.raises(
        ValueError, match=r"clip_windows key 'a' is a scan id .*per modality .*\{CT: \[low, high\]\}"
    ):
        _dm(root, clip_windows={"a": [-125.0, 275.0], "MR": None}).setup("test")
    manifest = read_manifest(root)
    assert scan_windows(manifest, ["a"], None, "x") == {"a": (-125.0, 275.0)}
    with pytest.raises(ValueError, match=r"window \[5.0, 1.0\] is not \[low, high\]"):
        scan_windows(manifest, ["a"], {"CT": [5.0, 1.0]}, "x")


def test_a_folder_without_a_manifest_says_how_to_fix_it(tmp_path):
    root = _prepared(tmp_path / "p", {"CT": None, "MR": None})
    (root / MANIFEST_NAME).unlink()
    (root / "label_map.json").write_text(json.dumps(NAMES))  # an older preparation
    with pytest.raises(
        FileNotFoundError, match=r"manifest.json does not exist \(it has the older label_map.json"
    ):
        _dm(root).setup("test")


def test_label_maps_come_from_the_manifest_and_a_clashing_one_is_refused(tmp_path):
    root = _prepared(tmp_path / "p", {"CT": None, "MR": None})
    dm = _dm(root)
    dm.setup("test")
    assert dm.label_map == NAMES
    with pytest.raises(
        ValueError, match=r"label_map 'sabs' gives .*'liver': 6.* but the label files of .* use"
    ):
        _dm(root, label_map="sabs").setup("test")


def test_labels_outside_the_manifests_map_are_an_error(tmp_path):
    root = _prepared(tmp_path / "p", {"CT": None, "MR": None})
    lab = np.zeros((16, 16, 8), np.int16)
    lab[1, 1, 1] = 7
    write_nifti(root / "b" / "label.nii.gz", lab, np.eye(4))
    with pytest.raises(ValueError, match=r"b/label.nii.gz: label ids \[7\] are outside the label map"):
        _dm(root).setup("test")


def test_the_embedded_sample_has_a_manifest_with_windows_per_modality():
    manifest = read_manifest(volumes_root())
    assert manifest["label_map"] == {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4}
    assert {s: r["modality"] for s, r in manifest["scans"].items()} == {"ct": "CT", "mr": "MR"}
    assert manifest["windows"] == {"CT": (-125.0, 275.0), "MR": None}
