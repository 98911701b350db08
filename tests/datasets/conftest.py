"""Tiny on-disk fixtures in every supported dataset layout (8x8 to 32x32 files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RNG_SEED = 1234


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write a uint8/uint16 array as PNG/JPG/BMP (by suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(array).save(path, quality=95)
    else:
        Image.fromarray(array).save(path)
    return path


def random_image(size: tuple[int, int], grey: bool = False, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = size if grey else (*size, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def binary_mask(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A 0/255 mask with a rectangle, so both classes are present."""
    mask = np.zeros(size, dtype=np.uint8)
    h, w = size
    offset = seed % 3
    mask[h // 4 + offset : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return mask


def write_pair(
    image_dir: Path,
    mask_dir: Path,
    stem: str,
    size: tuple[int, int] = (16, 16),
    image_ext: str = ".png",
    mask_name: str | None = None,
    grey: bool = False,
    mask: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write one image and its mask; ``mask_name`` defaults to ``<stem>.png``."""
    image = write_image(image_dir / f"{stem}{image_ext}", random_image(size, grey, seed))
    mask_array = binary_mask(size, seed) if mask is None else mask
    mask_path = write_image(mask_dir / (mask_name or f"{stem}.png"), mask_array)
    return image, mask_path


def make_folder_splits(root: Path) -> Path:
    """``<root>/{train,val,test}/{images,masks}`` with mixed names, sizes, formats and channels."""
    write_pair(root / "train/images", root / "train/masks", "a", (16, 16))
    write_pair(root / "train/images", root / "train/masks", "b", (8, 12), mask_name="b_mask.png", grey=True)
    write_pair(
        root / "train/images", root / "train/masks", "c", (32, 24), ".jpg", mask_name="c_segmentation.png"
    )
    write_pair(root / "train/images", root / "train/masks", "d", (16, 16), seed=3)
    write_pair(root / "train/images", root / "train/masks", "e", (20, 16), grey=True, seed=4)
    write_pair(root / "val/images", root / "val/masks", "v1", (16, 16))
    write_pair(root / "val/images", root / "val/masks", "v2", (12, 12), ".jpg")
    write_pair(root / "test/images", root / "test/masks", "t1", (16, 16))
    write_pair(root / "test/images", root / "test/masks", "t2", (24, 8), grey=True)
    write_pair(root / "test/images", root / "test/masks", "t3", (10, 14))
    return root


def make_folder_flat(root: Path, count: int = 10) -> Path:
    for i in range(count):
        write_pair(root / "images", root / "masks", f"img{i:02d}", (16, 16) if i % 2 else (12, 20), seed=i)
    return root


def make_polyp(root: Path) -> Path:
    for split, n in (("train", 3), ("validation", 2), ("test", 2)):
        for i in range(n):
            # Kvasir ships JPEG images and JPEG masks.
            write_pair(
                root / split / "images",
                root / split / "masks",
                f"{split}{i}",
                (16, 16),
                ".jpg",
                mask_name=f"{split}{i}.jpg",
                seed=i,
            )
    return root


def make_isic2016(root: Path, short: bool = False, n_train: int = 3) -> Path:
    prefix = "" if short else "ISBI2016_ISIC_Part1_"
    for split, n in (("Training", n_train), ("Test", 2)):
        for i in range(n):
            stem = f"ISIC_{split[:2]}{i:05d}"
            write_pair(
                root / f"{prefix}{split}_Data",
                root / f"{prefix}{split}_GroundTruth",
                stem,
                (16, 20),
                ".jpg",
                mask_name=f"{stem}_Segmentation.png",
                seed=i,
            )
    return root


def make_isic2017(root: Path, short: bool = False) -> Path:
    names = {"Training": "Training", "Validation": "Validation", "Test_v2": "Test"}
    for long_name, short_name in names.items():
        data = root / (f"{short_name}_Data" if short else f"ISIC-2017_{long_name}_Data")
        truth = root / (f"{short_name}_GroundTruth" if short else f"ISIC-2017_{long_name}_Part1_GroundTruth")
        for i in range(2):
            stem = f"ISIC_{short_name[:2]}{i:05d}"
            write_pair(data, truth, stem, (16, 16), ".jpg", mask_name=f"{stem}_segmentation.png", seed=i)
            # ISIC 2017 ships a superpixel PNG next to each image; it must not become a sample.
            write_image(data / f"{stem}_superpixels.png", random_image((16, 16), seed=i))
    return root


def make_isic2018(root: Path, short: bool = False) -> Path:
    data = root / ("Training_Data" if short else "ISIC2018_Task1-2_Training_Input")
    truth = root / ("Training_GroundTruth" if short else "ISIC2018_Task1_Training_GroundTruth")
    for i in range(6):
        stem = f"ISIC_{i:07d}"
        write_pair(data, truth, stem, (16, 16), ".jpg", mask_name=f"{stem}_segmentation.png", seed=i)
    (data / "LICENSE.txt").write_text("not an image")
    return root


def make_ham10000(root: Path) -> Path:
    for part, start in (("HAM10000_images_part_1", 0), ("HAM10000_images_part_2", 3)):
        for i in range(start, start + 3):
            write_image(root / part / f"ISIC_{i:07d}.jpg", random_image((12, 16), seed=i))
    (root / "HAM10000_metadata.csv").write_text("image_id\n")
    return root


LAYOUT_WRITERS: dict[str, Callable[[Path], Path]] = {
    "folder": make_folder_splits,
    "polyp": make_polyp,
    "isic2016": make_isic2016,
    "isic2017": make_isic2017,
    "isic2018": make_isic2018,
    "ham10000": make_ham10000,
}


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    return make_folder_splits(tmp_path / "folder")


@pytest.fixture
def flat_root(tmp_path: Path) -> Path:
    return make_folder_flat(tmp_path / "flat")
