"""Noise simulation on the embedded real masks: requested beta reached, clean files untouched, seeded."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datasets.image_io import read_mask
from datasets.layouts import find_samples
from datasets.noise.cli import generate_noisy_dataset, main
from datasets.noise.simulate import (
    corrupt_binary,
    corrupt_label_map,
    morphological_noise,
    noise_level,
    select_noisy_ids,
)
from datasets.noise.statistics import estimate_precision_from_subset, noise_precision

SAMPLE = Path(__file__).resolve().parents[2] / "datasets" / "sample"
NUCLEI = sorted((SAMPLE / "nuclei").glob("*/masks/*.png"))
CT = sorted((SAMPLE / "abdomen_ct").glob("*/masks/*.png"))


def test_noise_level_definition():
    clean = np.zeros((4, 4), bool)
    clean[1:3, 1:3] = True  # area 4
    noisy = clean.copy()
    noisy[0, 0] = True
    noisy[1, 1] = False  # XOR = 2
    assert noise_level(noisy, clean) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["dilate", "erode", "affine"])
@pytest.mark.parametrize("beta", [0.5, 0.7])
def test_binary_types_hit_beta_on_nuclei(kind, beta):
    for path in NUCLEI[::3]:
        mask = read_mask(path, 2).astype(bool)
        result = corrupt_binary(mask, beta, np.random.default_rng(0), kind)
        assert result.noise_type == kind
        assert abs(noise_level(result.mask, mask) - beta) <= 0.05, path
        assert result.achieved == pytest.approx(noise_level(result.mask, mask))


def test_dilation_and_erosion_direction():
    mask = read_mask(NUCLEI[0], 2).astype(bool)
    grown = morphological_noise(mask, 0.5, "dilate", np.random.default_rng(0))
    shrunk = morphological_noise(mask, 0.5, "erode", np.random.default_rng(0))
    assert (grown | mask).sum() == grown.sum() and grown.sum() > mask.sum()
    assert (shrunk & mask).sum() == shrunk.sum() and shrunk.sum() < mask.sum()
    with pytest.raises(ValueError, match="erosion"):
        morphological_noise(mask, 1.0, "erode", np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["dilate", "erode", "affine"])
def test_multiclass_ct_each_class_hits_beta(kind):
    for path in CT[::4]:
        labels = read_mask(path, 5)
        noisy, results = corrupt_label_map(labels, 0.5, np.random.default_rng(1), 5, kind)
        for cls, result in results.items():
            area = int((labels == cls).sum())
            if area < 40:  # a few-pixel class cannot change by exactly half
                continue
            achieved = noise_level(noisy == cls, labels == cls)
            assert abs(achieved - 0.5) <= 0.05, (path.name, cls, achieved)
            assert result.achieved == pytest.approx(achieved)


def test_seeded_reproducibility_and_unknown_type():
    mask = read_mask(NUCLEI[1], 2).astype(bool)
    a = corrupt_binary(mask, 0.7, np.random.default_rng(5))
    b = corrupt_binary(mask, 0.7, np.random.default_rng(5))
    assert a.noise_type == b.noise_type and np.array_equal(a.mask, b.mask)
    assert select_noisy_ids(list("abcdefgh"), 0.5, 3) == select_noisy_ids(list("hgfedcba"), 0.5, 3)
    assert len(select_noisy_ids(list("abcdefgh"), 0.5, 3)) == 4
    with pytest.raises(ValueError, match="unknown noise type"):
        corrupt_binary(mask, 0.5, np.random.default_rng(0), "shear")


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_cli_writes_next_to_clean_masks_and_never_touches_them(tmp_path):
    root = tmp_path / "nuclei"
    shutil.copytree(SAMPLE / "nuclei", root)
    before = _hashes(root)
    view = main(["--root", str(root), "--alpha", "0.5", "--beta", "0.7", "--seed", "0"])
    after = _hashes(root)
    assert all(after[k] == v for k, v in before.items())  # every clean file unchanged
    noisy_dir = root / "train" / "masks_noisy_a50_b70_s0"
    manifest = json.loads((noisy_dir / "manifest.json").read_text())
    assert (manifest["alpha"], manifest["beta"], manifest["seed"]) == (0.5, 0.7, 0)
    corrupted = [e for e in manifest["images"] if e["noisy"]]
    assert len(corrupted) == 5 and len(manifest["images"]) == 10
    for entry in corrupted:
        for cls in entry["classes"].values():
            assert abs(cls["achieved"] - cls["requested"]) <= 0.05
    records = find_samples("noisy", view, "train")
    assert all(r.mask.parent == noisy_dir.resolve() for r in records)
    assert find_samples("noisy", view, "val")[0].mask.parent.name == "masks"  # val stays clean
    pairs = [(read_mask(r.mask, 2), read_mask(root / "train" / "masks" / r.mask.name, 2)) for r in records]
    assert noise_precision(pairs, 2) == pytest.approx(manifest["precision"])
    with pytest.raises(FileExistsError):
        generate_noisy_dataset(root, "folder", 0.5, 0.7, 0)
    # same seed, fresh copy: identical noisy masks
    other = tmp_path / "again"
    shutil.copytree(SAMPLE / "nuclei", other)
    generate_noisy_dataset(other, "folder", 0.5, 0.7, 0)
    for path in noisy_dir.glob("*.png"):
        assert (other / "train" / "masks_noisy_a50_b70_s0" / path.name).read_bytes() == path.read_bytes()


def test_precision_hand_values_and_subset_estimate():
    clean = np.array([[0, 0, 1, 1]])
    noisy = np.array([[0, 1, 1, 1]])  # bg: 1/1 correct; fg: 2 of 3 correct
    assert noise_precision([(noisy, clean)], 2) == pytest.approx([1.0, 2 / 3])
    estimate, stderr = estimate_precision_from_subset([(noisy, clean)] * 3, 2, n_boot=20, seed=0)
    assert estimate == pytest.approx([1.0, 2 / 3]) and stderr == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError):
        estimate_precision_from_subset([], 2)


@pytest.mark.parametrize("kind", ["erode", "dilate"])
def test_cli_types_restrict_the_noise_types(tmp_path, kind):
    """Regression: ``--types`` was recorded in the manifest but every type was drawn anyway."""
    root = tmp_path / "nuclei"
    shutil.copytree(SAMPLE / "nuclei", root)
    main(["--root", str(root), "--alpha", "1.0", "--beta", "0.5", "--seed", "3", "--types", kind])
    manifest = json.loads((root / "train" / "masks_noisy_a100_b50_s3" / "manifest.json").read_text())
    drawn = {cls["type"] for entry in manifest["images"] for cls in entry["classes"].values()}
    assert manifest["types"] == [kind] and drawn == {kind}
