"""Reading 2D images and label masks from PNG/JPG/BMP/TIF files, and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from datasets.atomic_io import atomic_path

TIFF_SUFFIXES = {".tif", ".tiff"}
JPEG_SUFFIXES = {".jpg", ".jpeg"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# ITU-R BT.601 luma weights, the same ones PIL's "L" conversion uses.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MAX_SHOWN_VALUES = 10


class ImageReadError(ValueError):
    """An image or mask file is missing, corrupt or in a form this reader does not handle."""


def _pil_to_array(img: Image.Image, keep_palette: bool) -> np.ndarray:
    # Palette indices are class labels in masks; for images the palette colours are wanted.
    if img.mode == "P" and not keep_palette:
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif img.mode == "LA":
        img = img.convert("L")
    elif img.mode == "PA":
        img = img.convert("RGBA") if not keep_palette else img.convert("P")
    return np.asarray(img)


def _read_raw(path: Path, keep_palette: bool) -> np.ndarray:
    """Read a file into an HxW or HxWxC array with its stored dtype."""
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            array = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                img.load()
                array = _pil_to_array(img, keep_palette)
    except Exception as err:  # re-raised with the file named, never swallowed
        raise ImageReadError(f"cannot read image file {path}: {type(err).__name__}: {err}") from err
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        # Planar TIFFs store channels first.
        array = np.moveaxis(array, 0, -1)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageReadError(
            f"{path}: expected a 2D image (HxW or HxWxC with C in 1..4), got shape {array.shape}"
        )
    return array


def _to_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale stored intensities into float32 [0, 1] according to the storage dtype."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.integer):
        # PIL decodes 16-bit grey PNGs as int32 ("I") in some versions: treat as 16-bit.
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 65535:
            raise ImageReadError(f"{path}: integer image values [{lo}, {hi}] do not fit 8 or 16 bits")
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if np.isnan(array).any() or lo < 0.0 or hi > 1.0:
            raise ImageReadError(
                f"{path}: floating-point images must hold values in [0, 1] without NaN, got [{lo}, {hi}]"
            )
        return array.astype(np.float32)
    raise ImageReadError(f"{path}: unsupported pixel dtype {array.dtype}")


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """Read an image as float32 in ``[0, 1]`` with the requested number of channels.

    8-bit data is divided by 255, 16-bit data by 65535; an alpha channel is dropped. Grey images
    are replicated to 3 channels when ``channels == 3``; colour images become luminance
    (0.299 R + 0.587 G + 0.114 B) when ``channels == 1``.

    Args:
        path: Image file (PNG, JPG, BMP, TIF/TIFF).
        channels: Wanted number of channels, 1 or 3 (or the file's own channel count).

    Returns:
        Array of float32 values in ``[0, 1]``.

    Shape:
        Output: ``(H, W, channels)``.

    Raises:
        ImageReadError: If the file is missing, corrupt, not 2D, or cannot give ``channels`` channels.
    """
    path = Path(path)
    array = _read_raw(path, keep_palette=False)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] in (2, 4):
        array = array[:, :, : array.shape[2] - 1]  # drop alpha
    image = _to_unit_float(array, path)
    have = image.shape[2]
    if have == channels:
        return np.ascontiguousarray(image)
    if have == 1 and channels == 3:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if have == 3 and channels == 1:
        return np.ascontiguousarray((image @ LUMA_WEIGHTS)[:, :, None].astype(np.float32))
    raise ImageReadError(f"{path}: cannot convert a {have}-channel image to {channels} channels")


def _values_text(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_SHOWN_VALUES])
    more = f", ... ({len(values)} values)" if len(values) > _MAX_SHOWN_VALUES else ""
    return f"[{shown}{more}]"


def _binarise_lossy_mask(array: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    # JPEG ringing turns 0/255 into values near them; a mid threshold recovers the binary label.
    if num_classes != 2:
        raise ValueError(
            f"mask {path} is a lossy JPEG; class indices cannot be trusted for num_classes={num_classes} "
            "(JPEG masks are only accepted as binary masks, num_classes=2)"
        )
    if array.ndim == 3:
        array = array[:, :, : 3 if array.shape[2] >= 3 else 1].mean(axis=2)
    return (array >= 128).astype(np.int64)


def read_mask(path: str | Path, num_classes: int) -> np.ndarray:
    """Read a label mask as class indices.

    A mask whose values are a subset of ``{0, 255}`` is binary and maps 255 to 1; otherwise the
    stored values are the class indices. A colour mask whose channels are all equal is reduced to
    one channel. Palette PNGs give their palette indices. JPEG masks (e.g. Kvasir-SEG) cannot keep
    exact values, so for ``num_classes == 2`` they are binarised at 128 (channel mean); JPEG masks
    with more classes are rejected.

    Args:
        path: Mask file (PNG, BMP, TIF/TIFF; JPG only if lossless values survive).
        num_classes: Number of classes; every value must lie in ``[0, num_classes)``.

    Returns:
        Integer class map of dtype int64.

    Shape:
        Output: ``(H, W)``.

    Raises:
        ImageReadError: If the file is missing or corrupt.
        ValueError: If channels differ, values are not integers, or a value is outside
            ``[0, num_classes)``; the message names the file, the offending values and num_classes.
    """
    path = Path(path)
    array = _read_raw(path, keep_palette=True)
    if path.suffix.lower() in JPEG_SUFFIXES:
        return _binarise_lossy_mask(array, path, num_classes)
    if array.ndim == 3:
        if array.shape[2] in (2, 4):
            array = array[:, :, : array.shape[2] - 1]
        if array.shape[2] > 1 and not all(
            np.array_equal(array[:, :, 0], array[:, :, c]) for c in range(1, array.shape[2])
        ):
            raise ValueError(
                f"mask {path} has {array.shape[2]} channels with different values; "
                "expected a single-channel class-index mask (or equal channels)"
            )
        array = array[:, :, 0]
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise ValueError(f"mask {path} holds non-integer values; expected class indices")
    mask = array.astype(np.int64)
    values = np.unique(mask)
    if set(values.tolist()) <= {0, 255}:
        mask = (mask == 255).astype(np.int64)
        values = np.unique(mask)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise ValueError(
            f"mask {path} has values {_values_text(bad)} outside [0, {num_classes}) "
            f"for num_classes={num_classes}"
        )
    return mask


def write_png_atomic(path: str | Path, array: np.ndarray) -> None:
    """Write an array as PNG through a temporary file renamed into place.

    Args:
        path: Destination ``.png`` path; parent folders are created.
        array: uint8 or uint16 array, HxW or HxWx{3,4}; bool is stored as 0/255.

    Raises:
        ValueError: If the dtype or shape cannot be stored as PNG.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png_atomic({path}): dtype must be uint8/uint16/bool, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8)):
        raise ValueError(
            f"write_png_atomic({path}): shape must be HxW (8/16-bit) or HxWx3/4 (8-bit), got {array.shape}"
        )
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
