"""Map-style dataset of 2D (image, mask) pairs with seeded albumentations and optional extra maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.image_io import read_image, read_mask
from datasets.patches import SpatialStep, patch_rng
from datasets.preprocess import normalise_image
from datasets.records import SampleRecord
from datasets.transforms import STAGES, sample_seed, seed_transform
from datasets.volume_slices import VolumeCache, read_slice

ExtraMapsFn = Callable[[SampleRecord, np.ndarray], dict[str, np.ndarray]]

RESERVED_KEYS = frozenset({"image", "mask", "id", "index", "orig_mask", "orig_size"})
# Keys kept as per-sample lists by collate_segmentation (sizes differ or not tensors).
LIST_KEYS = frozenset({"id", "orig_mask", "orig_size"})
_INT32_MAX = np.iinfo(np.int32).max


def _as_int32(array: np.ndarray, what: str) -> np.ndarray:
    # OpenCV (used by albumentations) cannot warp int64 arrays.
    if array.size and (array.min() < -_INT32_MAX or array.max() > _INT32_MAX):
        raise ValueError(f"{what}: values [{array.min()}, {array.max()}] do not fit int32")
    return np.ascontiguousarray(array, dtype=np.int32)


class SegmentationDataset(Dataset):
    """Reads, checks, augments and normalises 2D segmentation samples.

    Augmentation randomness is reseeded for every item from ``(seed, epoch, index)``, so the same
    seed gives the same samples whatever the worker count or order; call ``set_epoch`` to vary them.

    Args:
        records: Samples to serve (``mask`` None for unlabelled data).
        num_classes: Number of classes; mask values must lie in ``[0, num_classes)``.
        in_channels: Image channels fed to the model (1 or 3).
        transform: Albumentations pipeline (see ``build_transforms``); None applies nothing, so all
            images must then share one size to be batched.
        stage: ``train``, ``val`` or ``test``; ``test`` also returns the original-size mask.
        seed: Base seed of the augmentation.
        extra_maps: Called with the record and the un-augmented ``HxWxC`` image; returns named
            ``HxW`` integer maps (e.g. superpixels) transformed like the mask and returned as int64.
        spatial: Applied to the image, mask and extra maps at native resolution before ``transform``
            (``data.sampling: patch``: the patch crop), with a generator seeded from
            ``(seed, epoch, index)`` (:func:`datasets.patches.patch_rng`).

        volumes: Reader of slice records (``slice_index`` set; :mod:`datasets.volume_slices`); needed
            only when ``records`` are slices of volumes.
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        num_classes: int,
        in_channels: int,
        transform: A.BaseCompose | None,
        stage: str,
        seed: int = 0,
        extra_maps: ExtraMapsFn | None = None,
        spatial: SpatialStep | None = None,
        volumes: VolumeCache | None = None,
    ) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}'; expected one of {STAGES}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.records = list(records)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.transform = transform
        self.stage = stage
        self.seed = seed
        self.extra_maps = extra_maps
        self.spatial = spatial
        self.volumes = volumes
        self.epoch = 0
        self._registered_targets: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations ``__getitem__`` produces."""
        self.epoch = int(epoch)

    def _load(self, record: SampleRecord) -> tuple[np.ndarray, np.ndarray | None]:
        if record.slice_index is not None:
            if self.volumes is None:
                raise ValueError(f"record {record.id} is a volume slice but the dataset has no volume reader")
            return read_slice(self.volumes, record, self.in_channels, self.num_classes)
        image = read_image(record.image, self.in_channels)
        if record.mask is None:
            return image, None
        mask = read_mask(record.mask, self.num_classes)
        if mask.shape != image.shape[:2]:
            raise ValueError(
                f"mask {record.mask} has size {mask.shape} (HxW) but image {record.image} has size "
                f"{image.shape[:2]}; each mask must match its image"
            )
        return image, mask

    def _extra_targets(self, record: SampleRecord, image: np.ndarray) -> dict[str, np.ndarray]:
        if self.extra_maps is None:
            return {}
        maps = self.extra_maps(record, image)
        targets = {}
        for name, array in maps.items():
            if name in RESERVED_KEYS:
                raise ValueError(f"extra map name '{name}' is reserved: {sorted(RESERVED_KEYS)}")
            array = np.asarray(array)
            if array.shape != image.shape[:2]:
                raise ValueError(
                    f"extra map '{name}' for {record.image} has shape {array.shape}, "
                    f"expected the image size {image.shape[:2]}"
                )
            targets[name] = _as_int32(array, f"extra map '{name}' of {record.image}")
        return targets

    def _register(self, names: Sequence[str]) -> None:
        new = [n for n in names if n not in self._registered_targets]
        if new and self.transform is not None:
            # Unregistered keys pass through albumentations untouched: they would silently misalign.
            self.transform.add_targets({name: "mask" for name in new})
        self._registered_targets.update(new)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Return one sample.

        Args:
            index: Dataset index, or ``(index, epoch)`` as yielded by ``EpochShuffleSampler`` so the
                epoch reaches worker processes that were started in an earlier epoch.

        Returns:
            Dict with ``image`` (float32, normalised to [-1, 1]), ``mask`` (int64, when labelled),
            ``id``, ``index``, one int64 tensor per extra map, and in stage ``test``
            ``orig_mask`` (int64 at the original resolution, when labelled) and ``orig_size``.

        Shape:
            image: ``(C, H, W)``; mask and extra maps: ``(H, W)``; orig_mask: ``(H0, W0)``.
        """
        index, epoch = index if isinstance(index, tuple) else (index, self.epoch)
        record = self.records[index]
        image, mask = self._load(record)
        targets: dict[str, np.ndarray] = {"image": image}
        if mask is not None:
            targets["mask"] = _as_int32(mask, str(record.mask))
        extra = self._extra_targets(record, image)
        targets.update(extra)
        if self.spatial is not None:
            targets = self.spatial(targets, record, patch_rng(self.seed, epoch, index))
        if self.transform is not None:
            self._register(list(extra))
            seed_transform(self.transform, sample_seed(self.seed, epoch, index))
            targets = self.transform(**targets)
        # The one model-input normalisation, shared with prediction (datasets.preprocess).
        sample: dict[str, Any] = {"image": normalise_image(targets["image"]), "id": record.id, "index": index}
        if mask is not None:
            sample["mask"] = torch.from_numpy(np.asarray(targets["mask"], dtype=np.int64))
        for name in extra:
            sample[name] = torch.from_numpy(np.asarray(targets[name], dtype=np.int64))
        if self.stage == "test":
            sample["orig_size"] = (int(image.shape[0]), int(image.shape[1]))
            if mask is not None:
                sample["orig_mask"] = torch.from_numpy(mask)
        return sample


def collate_segmentation(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples of ``SegmentationDataset``.

    Tensors are stacked; ``id``, ``orig_mask`` and ``orig_size`` stay lists because original
    sizes differ; ``index`` becomes an int64 tensor.

    Args:
        batch: Samples, all with the same keys.

    Returns:
        The batch dict.

    Raises:
        ValueError: If samples have different keys or a stacked key has different shapes.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    keys = set(batch[0])
    for sample in batch[1:]:
        if set(sample) != keys:
            raise ValueError(
                f"samples in one batch have different keys: {sorted(keys)} vs {sorted(sample)} "
                f"(ids {batch[0].get('id')}, {sample.get('id')})"
            )
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        if key in LIST_KEYS:
            out[key] = values
        elif key == "index":
            out[key] = torch.as_tensor(values, dtype=torch.int64)
        elif all(isinstance(v, torch.Tensor) for v in values):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot stack '{key}' with shapes {sorted(shapes)}; resize in the transform "
                    "or use batch_size 1"
                )
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
