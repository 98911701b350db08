"""Volume cases as 2D slices: expansion, foreground oversampling and cached slice reading.

A case record of a volume layout (:mod:`datasets.volume_layouts`) becomes one record per slice along
``inference.slice_axis`` of the RAS-canonical volume (``<case>_zNNN``, ``group`` kept). A slice is read
by the function prediction uses (:func:`datasets.preprocess.volume_slice_image`): clipped to the CT
window or the volume's percentile range, scaled to ``[0, 1]``, shown in the training view, with
``inference.context`` neighbours as channels. Whole volumes are cached per process (least recently
used first out), so slices of one volume are read from disk once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import nibabel as nib
import numpy as np

from core.settings import Settings
from datasets.preprocess import InferenceConfig, intensity_range, to_view, volume_slice_image
from datasets.records import SampleRecord
from datasets.volumes.geometry import grid_difference
from datasets.volumes.label_maps import integer_labels


@dataclass(frozen=True)
class VolumeConfig(Settings):
    """How a volume layout is read (``data.init_args.volumes``).

    Attributes:
        foreground_repeat: Each training slice that contains foreground appears this many times per
            epoch (1: every slice once).
        percent_of: What ``percent`` counts: ``slices`` (SSL-MedSeg's labelled fractions) or
            ``patients`` (every slice of the drawn patients).
        test_unit: ``volume`` (each test case predicted slice by slice, stacked and scored in 3D, mm)
            or ``slice`` (per-slice 2D metrics, as for image datasets).
        cache_volumes: Volumes kept in memory per loader process.
        slabs: Cut every scan into this many contiguous slabs along the slicing axis, each its own case
            ``<case>_sK`` (for data with very few scans, e.g. the embedded sample: slabs of one scan are
            NOT independent patients, so a split between them measures generalisation along z only).
    """

    config_key: ClassVar[str] = "volumes"

    foreground_repeat: int = 1
    percent_of: Literal["slices", "patients"] = "slices"
    test_unit: Literal["volume", "slice"] = "volume"
    cache_volumes: int = 8
    slabs: int = 1

    def __post_init__(self) -> None:
        if self.foreground_repeat < 1:
            raise ValueError(f"volumes.foreground_repeat must be >= 1, got {self.foreground_repeat}")
        if self.percent_of not in ("slices", "patients"):
            raise ValueError(f"volumes.percent_of must be 'slices' or 'patients', got {self.percent_of!r}")
        if self.test_unit not in ("volume", "slice"):
            raise ValueError(f"volumes.test_unit must be 'volume' or 'slice', got {self.test_unit!r}")
        if self.cache_volumes < 1:
            raise ValueError(f"volumes.cache_volumes must be >= 1, got {self.cache_volumes}")
        if self.slabs < 1:
            raise ValueError(f"volumes.slabs must be >= 1, got {self.slabs}")


@dataclass
class LoadedVolume:
    """A volume on its RAS-canonical grid with what slicing needs.

    Attributes:
        array: float32 voxels ``[X, Y, Z]`` (labels: int64).
        affine: The canonical affine.
        spacing: Voxel size in mm along the canonical axes.
        window: The ``(low, high)`` intensities mapped to ``[0, 1]`` (images only).
        stored_affine: The affine as stored in the file (shown in messages).
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    window: tuple[float, float] | None = None
    stored_affine: np.ndarray | None = None

    @property
    def orientation(self) -> str:
        """Axis codes of the array's axes, e.g. ``"RAS"`` (as :class:`datasets.volumes.io.Volume`)."""
        return "".join(nib.aff2axcodes(self.affine))


def canonical_shape(path: Path, reorient: bool = True) -> tuple[int, ...]:
    """The RAS-canonical array shape of a NIfTI file from its header (no voxel is read).

    With ``reorient`` False: the stored shape (``inference.reorient``).

    Raises:
        ValueError: If the file cannot be read or is not 3D (a 4D file with one volume is accepted).
    """
    try:
        img = nib.load(str(path))
    except Exception as err:  # re-raised with the file named
        raise ValueError(f"cannot read volume {path}: {type(err).__name__}: {err}") from err
    shape = tuple(int(v) for v in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"volume {path} has shape {shape}; expected a 3D volume [X, Y, Z]")
    if not reorient:
        return shape
    ornt = nib.io_orientation(img.affine)
    return tuple(shape[int(np.where(ornt[:, 0] == axis)[0][0])] for axis in range(3))


def load_canonical(path: Path, label: bool, reorient: bool = True) -> LoadedVolume:
    """Read a NIfTI file onto its RAS-canonical grid (images float32, labels checked integer ids).

    With ``reorient`` False the stored voxel axes are kept (``inference.reorient``).

    Raises:
        ValueError: For an unreadable or non-3D file, or a label volume with fractional/negative values.
    """
    canonical_shape(path)
    stored = nib.load(str(path))
    img = nib.as_closest_canonical(stored) if reorient else stored
    data = np.asarray(img.dataobj)
    data = data.reshape(data.shape[:3])
    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    data = integer_labels(data, f"label volume {path}") if label else data.astype(np.float32)
    return LoadedVolume(data, affine, spacing, stored_affine=np.asarray(stored.affine, dtype=np.float64))


def check_same_grid(image: Path, image_vol: LoadedVolume, label: Path, label_vol: LoadedVolume) -> None:
    """An image and its label volume must share shape and affine (orientation, spacing, origin).

    Raises:
        ValueError: Naming both files, shapes and affines.
    """
    difference = grid_difference(image_vol, label_vol)  # type: ignore[arg-type]  # duck-typed as a Volume
    if difference is None:
        return

    def shown(volume: LoadedVolume) -> list:
        return np.round(
            volume.stored_affine if volume.stored_affine is not None else volume.affine, 3
        ).tolist()

    raise ValueError(
        f"label volume {label} (shape {label_vol.array.shape}, affine {shown(label_vol)}) "
        f"does not lie on the grid of image {image} (shape {image_vol.array.shape}, "
        f"affine {shown(image_vol)}): {difference}; resample one onto the other"
    )


class VolumeCache:
    """Canonical volumes by path, least recently used dropped first (one cache per loader process)."""

    def __init__(self, size: int, inference: InferenceConfig) -> None:
        self.size, self.inference = size, inference
        self._items: OrderedDict[tuple[str, bool], LoadedVolume] = OrderedDict()

    def get(self, path: Path, label: bool) -> LoadedVolume:
        """The volume of ``path`` (its intensity window computed once for images)."""
        key = (str(path), label)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        volume = load_canonical(path, label, self.inference.reorient)
        if not label:
            volume.window = intensity_range(volume.array, self.inference)
        self._items[key] = volume
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return volume

    def case(self, record: SampleRecord) -> tuple[LoadedVolume, LoadedVolume | None]:
        """Image and label (None when unlabelled) of a record, checked to share a grid."""
        image = self.get(record.image, label=False)
        if record.mask is None:
            return image, None
        label = self.get(record.mask, label=True)
        check_same_grid(record.image, image, record.mask, label)
        return image, label


def read_slice(
    cache: VolumeCache, record: SampleRecord, channels: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Image ``H x W x channels`` in ``[0, 1]`` and mask ``H x W`` (int64) of one slice record.

    Raises:
        ValueError: If the label volume holds ids ``>= num_classes`` (naming the file and the ids).
    """
    if record.slice_index is None:
        raise ValueError(f"record {record.id} is a whole case, not a slice")
    inference = cache.inference
    image_vol, label_vol = cache.case(record)
    image = volume_slice_image(
        image_vol.array, inference.slice_axis, record.slice_index, inference.view, image_vol.window,
        channels, inference.context,
    )  # fmt: skip
    if label_vol is None:
        return image, None
    mask = to_view(np.take(label_vol.array, record.slice_index, axis=inference.slice_axis), inference.view)
    if int(mask.max(initial=0)) >= num_classes:
        bad = sorted(int(v) for v in np.unique(mask) if v >= num_classes)
        raise ValueError(
            f"label volume {record.mask} holds ids {bad}; expected 0..{num_classes - 1} (num_classes)"
        )
    return image, np.ascontiguousarray(mask)


def expand_to_slices(cases: Sequence[SampleRecord], inference: InferenceConfig) -> list[SampleRecord]:
    """One record per slice (``<case>_zNNN``) of each case along ``inference.slice_axis``; groups kept.

    Raises:
        ValueError: For a volume that is not 3D or cannot be read.
    """
    out: list[SampleRecord] = []
    for case in cases:
        z0, z1 = case.slab or (0, canonical_shape(case.image, inference.reorient)[inference.slice_axis])
        out += [
            replace(case, id=f"{case.id}_z{z:03d}", group=case.unit, slice_index=z, slab=None)
            for z in range(z0, z1)
        ]
    return out


def split_into_slabs(
    cases: Sequence[SampleRecord], inference: InferenceConfig, slabs: int
) -> list[SampleRecord]:
    """Each case as ``slabs`` contiguous slab cases ``<case>_sK`` (``[start, stop)``; each its own group).

    Slab ``k`` of ``n`` slices covers ``[floor(k n / slabs), floor((k + 1) n / slabs))``.

    Raises:
        ValueError: When a scan has fewer slices than ``slabs``.
    """
    if slabs == 1:
        return list(cases)
    out = []
    for case in cases:
        n = canonical_shape(case.image, inference.reorient)[inference.slice_axis]
        if n < slabs:
            raise ValueError(
                f"volumes.slabs {slabs}: {case.image} has only {n} slices along axis {inference.slice_axis}"
            )
        for k in range(slabs):
            slab = (k * n // slabs, (k + 1) * n // slabs)
            out.append(replace(case, id=f"{case.id}_s{k}", group=f"{case.id}_s{k}", slab=slab))
    return out


def repeat_foreground(
    slices: Sequence[SampleRecord], inference: InferenceConfig, times: int
) -> list[SampleRecord]:
    """Slice records with each slice containing foreground repeated ``times`` times (in place, ordered).

    Each label volume is read once; unlabelled slices appear once.
    """
    if times == 1:
        return list(slices)
    other = tuple(a for a in range(3) if a != inference.slice_axis)
    foreground: dict[Path, set[int]] = {}
    out: list[SampleRecord] = []
    for record in slices:
        if record.mask is not None and record.mask not in foreground:
            label = load_canonical(record.mask, True, inference.reorient).array
            foreground[record.mask] = {int(z) for z in np.where((label > 0).any(axis=other))[0]}
        fg = record.mask is not None and record.slice_index in foreground[record.mask]
        out.extend([record] * (times if fg else 1))
    return out


def volume_case_problem(record: SampleRecord, num_classes: int) -> tuple[Path, str] | None:
    """What is wrong with a volume case (the file and the message), or None when it reads.

    Checked as the slice reader reads it: a 3D image, a label volume on the image's grid (shape and
    affine) holding integer ids below ``max(num_classes, 2)``.
    """
    try:
        image = load_canonical(record.image, label=False)
    except (ValueError, OSError) as err:
        return record.image, f"{err}; expected a readable 3D NIfTI volume"
    if record.mask is None:
        return None
    try:
        label = load_canonical(record.mask, label=True)
        check_same_grid(record.image, image, record.mask, label)
    except (ValueError, OSError) as err:
        return record.mask, str(err)
    classes = max(num_classes, 2)
    bad = sorted(int(v) for v in np.unique(label.array) if v >= classes)
    if bad:
        return (
            record.mask,
            f"label volume {record.mask} holds ids {bad}; expected 0..{classes - 1} (num_classes)",
        )
    return None
