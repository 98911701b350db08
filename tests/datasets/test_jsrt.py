"""JSRT raw .IMG reading and the SCR-mask layouts, on tiny files written in those formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.image_io import read_image, read_mask
from datasets.jsrt import read_jsrt_img, read_scr_mask
from datasets.layouts import find_samples


def _write_img(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    values.astype(">u2").tofile(path)


def _write_gif(path: Path, inside: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(inside.astype(np.uint8) * 255).save(path, format="GIF")


def test_read_jsrt_img_big_endian_12_bit(tmp_path):
    values = np.arange(32, dtype=np.uint16).reshape(4, 8) * 128  # up to 3968 < 4096
    _write_img(tmp_path / "JPCLN001.IMG", values)
    raw = read_jsrt_img(tmp_path / "JPCLN001.IMG", size=(4, 8), invert=False)
    assert raw.dtype == np.uint16 and np.array_equal(raw, values)
    assert np.array_equal(read_jsrt_img(tmp_path / "JPCLN001.IMG", size=(4, 8)), 4095 - values)
    # little-endian bytes would read as a different image: the byte order matters
    assert (tmp_path / "JPCLN001.IMG").read_bytes()[:4] == bytes([0, 0, 0, 128])
    with pytest.raises(ValueError, match="big-endian"):
        read_jsrt_img(tmp_path / "JPCLN001.IMG")  # default 2048x2048 does not match
    _write_img(tmp_path / "bad.IMG", np.full((2, 2), 5000))
    with pytest.raises(ValueError, match="12 bits"):
        read_jsrt_img(tmp_path / "bad.IMG", size=(2, 2))


def _scr_dataset(root: Path) -> None:
    image = np.zeros((16, 16), np.uint16)
    image[:, 8:] = 4000
    _write_img(root / "All247images" / "JPCLN001.IMG", image)
    masks = {
        name: np.zeros((8, 8), bool)
        for name in ("left lung", "right lung", "heart", "left clavicle", "right clavicle")
    }
    masks["right lung"][2:7, 1:3] = True
    masks["left lung"][2:7, 5:7] = True
    masks["heart"][5:8, 3:5] = True
    masks["right clavicle"][1:3, 1:4] = True  # overlaps the right lung at row 2
    masks["left clavicle"][1, 5:8] = True
    for name, inside in masks.items():
        _write_gif(root / "scratch" / "masks" / "fold1" / name / "JPCLN001.gif", inside)


def test_scr_mask_and_layouts(tmp_path):
    _scr_dataset(tmp_path)
    gif = tmp_path / "scratch/masks/fold1/heart/JPCLN001.gif"
    assert read_scr_mask(gif).sum() == 6
    records = find_samples("jsrt", tmp_path, "train")
    assert [r.id for r in records] == ["JPCLN001"] and find_samples("jsrt", tmp_path, "val") == []
    labels = read_mask(records[0].mask, 4)
    assert labels.shape == (8, 8)
    assert labels[2, 1] == 3  # clavicle painted over lung
    assert labels[4, 1] == 1 and labels[6, 3] == 2 and labels[0, 0] == 0
    image = read_image(records[0].image, 1)[..., 0]
    assert image.shape == (8, 8)  # 16x16 image block-averaged to the 8x8 mask size
    # inverted: raw 4000 (right half) becomes dark, raw 0 becomes white
    assert image[0, 0] == pytest.approx(1.0) and image[0, 7] == pytest.approx(95 / 4095, abs=1e-4)
    heart = read_mask(find_samples("jsrt_heart", tmp_path, "train")[0].mask, 2)
    assert heart.sum() == 6 and set(np.unique(heart)) == {0, 1}
    clav = read_mask(find_samples("jsrt_clavicles", tmp_path, "train")[0].mask, 2)
    assert clav.sum() == 9


def test_missing_structure_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="JSRT"):
        find_samples("jsrt", tmp_path, "train")
