"""JSRT chest radiographs (raw ``.IMG``) with SCR lung/heart/clavicle masks, as framework layouts.

JSRT images are 2048 x 2048, 12-bit grey values stored as big-endian unsigned 16-bit words with no
header (0.175 mm pixels); by default values are inverted (``4095 - v``) so that the lungs are dark,
as displayed by the SCR. SCR masks are one ``.gif`` per structure and image, at 1024 x 1024::

    <root>/All247images/JPCLN001.IMG   (or <root>/images/, or <root>/ itself)
    <root>/masks/{left lung,right lung,heart,left clavicle,right clavicle}/JPCLN001.gif
      (also <root>/scr/masks/ or <root>/scratch/masks/; sub-folders such as fold1/, fold2/ are searched)

Records must point at files ``read_image``/``read_mask`` understand, so on first use the layout
converts each image (block-averaged to the mask size, stored as 16-bit PNG) and each composed mask
into ``<root>/.jsrt_png/`` (atomic writes; existing files are reused). Layouts (train split only;
validation/test come from the DataModule's k-fold or a ``split_file``, e.g. the SCR folds):

* ``jsrt``: 4 classes, 0 background, 1 lungs, 2 heart, 3 clavicles (clavicles painted over lungs).
* ``jsrt_lungs``, ``jsrt_heart``, ``jsrt_clavicles``: binary tasks, as trained in the paper.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.image_io import write_png_atomic
from datasets.layouts import register_layout
from datasets.records import SampleRecord

SCR_STRUCTURES = ("left lung", "right lung", "heart", "left clavicle", "right clavicle")
# Class of each SCR structure per task; painted in this order, so later entries win overlaps.
JSRT_TASKS: dict[str, dict[str, int]] = {
    "multiclass": {"left lung": 1, "right lung": 1, "heart": 2, "left clavicle": 3, "right clavicle": 3},
    "lungs": {"left lung": 1, "right lung": 1},
    "heart": {"heart": 1},
    "clavicles": {"left clavicle": 1, "right clavicle": 1},
}
JSRT_MAX_ANGLE = {"lungs": 15.0, "heart": 15.0, "clavicles": 2.0}
_IMAGE_DIRS = ("All247images", "images", "Images", "jsrt", ".")
_MASK_DIRS = ("masks", "scr/masks", "scratch/masks", "SCR/masks", "scr")
CONVERTED_DIRNAME = ".jsrt_png"


def read_jsrt_img(
    path: str | Path, size: tuple[int, int] | None = (2048, 2048), invert: bool = True
) -> np.ndarray:
    """Read a raw JSRT ``.IMG`` file (big-endian uint16, 12 significant bits, no header).

    Args:
        path: The ``.IMG`` file.
        size: ``(H, W)``; None infers a square from the file length.
        invert: Return ``4095 - value`` (lungs dark, as the SCR displays them).

    Returns:
        uint16 ``[H, W]`` with values in ``[0, 4095]``.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If the length does not match ``size`` (or no square) or a value exceeds 12 bits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSRT image not found: {path}")
    raw = np.fromfile(path, dtype=">u2")
    if size is None:
        side = math.isqrt(raw.size)
        if side * side != raw.size:
            raise ValueError(f"{path}: {raw.size} 16-bit words is not a square image; pass size=(H, W)")
        size = (side, side)
    if raw.size != size[0] * size[1]:
        raise ValueError(
            f"{path}: {raw.size * 2} bytes, expected {size[0]}x{size[1]} big-endian uint16 = "
            f"{size[0] * size[1] * 2} bytes"
        )
    if raw.size and int(raw.max()) > 4095:
        raise ValueError(f"{path}: value {int(raw.max())} exceeds 12 bits; is this a JSRT .IMG file?")
    image = raw.reshape(size).astype(np.uint16)
    return (4095 - image).astype(np.uint16) if invert else image


def read_scr_mask(path: str | Path) -> np.ndarray:
    """Read one SCR structure mask (``.gif``, non-zero = inside) as a boolean array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SCR mask not found: {path}")
    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 0


def _block_mean(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    fy, fx = image.shape[0] // shape[0], image.shape[1] // shape[1]
    if fy * shape[0] != image.shape[0] or fx * shape[1] != image.shape[1]:
        raise ValueError(f"image size {image.shape} is not an integer multiple of the mask size {shape}")
    return image.reshape(shape[0], fy, shape[1], fx).mean(axis=(1, 3))


def find_jsrt_files(root: Path) -> tuple[dict[str, Path], dict[str, dict[str, Path]]]:
    """Locate the ``.IMG`` images and the SCR masks of every structure under ``root``.

    Returns:
        ``({id: image}, {structure: {id: gif}})``.

    Raises:
        FileNotFoundError: If no image or no mask folder is found (message gives the structure).
    """
    images: dict[str, Path] = {}
    for name in _IMAGE_DIRS:
        folder = root / name
        if folder.is_dir():
            images = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.upper() == ".IMG"}
            if images:
                break
    mask_root = next((root / n for n in _MASK_DIRS if (root / n).is_dir()), None)
    if not images or mask_root is None:
        raise FileNotFoundError(
            f"{root} does not look like JSRT + SCR; expected:\n{__doc__.split('::')[1].split(chr(10) * 2)[0]}"
        )
    masks: dict[str, dict[str, Path]] = {s: {} for s in SCR_STRUCTURES}
    for structure in SCR_STRUCTURES:
        for folder in sorted(p for p in mask_root.rglob(structure) if p.is_dir()):
            for gif in sorted(folder.glob("*.gif")):
                masks[structure].setdefault(gif.stem, gif)
    return images, masks


def convert_sample(image_path: Path, mask_paths: dict[str, Path], task: str, out_root: Path) -> SampleRecord:
    """Convert one JSRT image + its SCR masks for ``task`` into PNGs under ``out_root`` (if missing).

    Raises:
        KeyError: For an unknown task.
        FileNotFoundError: If a structure of the task has no mask for this image.
    """
    if task not in JSRT_TASKS:
        raise KeyError(f"unknown JSRT task {task!r}; expected one of {sorted(JSRT_TASKS)}")
    key = image_path.stem
    missing = [s for s in JSRT_TASKS[task] if s not in mask_paths]
    if missing:
        raise FileNotFoundError(f"JSRT image {image_path} has no SCR mask for {missing}")
    image_out = out_root / "images" / f"{key}.png"
    mask_out = out_root / f"masks_{task}" / f"{key}.png"
    if not mask_out.is_file():
        labels = None
        for structure, cls in JSRT_TASKS[task].items():
            inside = read_scr_mask(mask_paths[structure])
            labels = np.zeros(inside.shape, np.uint8) if labels is None else labels
            labels[inside] = cls
        write_png_atomic(mask_out, labels * 255 if task != "multiclass" else labels)
    if not image_out.is_file():
        with Image.open(mask_out) as m:
            shape = (m.height, m.width)
        image = read_jsrt_img(image_path, size=None).astype(np.float64)
        small = _block_mean(image, shape) if image.shape != shape else image
        write_png_atomic(image_out, np.round(small * (65535 / 4095)).astype(np.uint16))
    return SampleRecord(id=key, image=image_out, mask=mask_out)


def jsrt_records(root: str | Path, task: str = "multiclass") -> list[SampleRecord]:
    """All JSRT samples with SCR masks for ``task``, converted on first use.

    Args:
        root: JSRT + SCR root (see the module docstring).
        task: ``multiclass``, ``lungs``, ``heart`` or ``clavicles``.

    Returns:
        Records sorted by id; images without any SCR mask are skipped (SCR covers all 247).
    """
    root = Path(root)
    images, masks = find_jsrt_files(root)
    out_root = root / CONVERTED_DIRNAME
    records = []
    for key, path in sorted(images.items()):
        per_image = {s: masks[s][key] for s in SCR_STRUCTURES if key in masks[s]}
        if not per_image:
            continue
        records.append(convert_sample(path, per_image, task, out_root))
    if not records:
        raise FileNotFoundError(f"no JSRT image under {root} has SCR masks (ids must match the .gif stems)")
    return records


def _make_layout(task: str) -> None:
    name = "jsrt" if task == "multiclass" else f"jsrt_{task}"

    @register_layout(name, structure=__doc__.split("::")[1].split("\n\n")[0])
    def layout(root: Path, split: str) -> list[SampleRecord]:
        return jsrt_records(root, task) if split == "train" else []

    layout.__name__ = f"{name}_layout"


for _task in JSRT_TASKS:
    _make_layout(_task)
