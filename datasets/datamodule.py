"""Supervised segmentation DataModule: layout splits, k-fold, labelled fractions, seeded loaders."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader, Sampler

from datasets.datamodule_args import check_args, inference_config
from datasets.patch_pipeline import PatchPlan, WindowSpec, resolve_patches, stage_pipeline
from datasets.patches import PatchConfig
from datasets.preprocess import InferenceConfig
from datasets.records import SampleRecord
from datasets.samplers import EpochShuffleSampler, ResumableDataLoader
from datasets.segmentation_dataset import ExtraMapsFn, SegmentationDataset, collate_segmentation
from datasets.split_resolution import SplitSettings, resolve_splits
from datasets.superpixels.config import SuperpixelConfig
from datasets.superpixels.loader_hook import make_superpixel_hook
from datasets.transforms import build_transforms
from datasets.volume_cases import VolumeCaseDataset, collate_case
from datasets.volume_layouts import is_volume_layout
from datasets.volume_slices import VolumeCache, VolumeConfig, expand_to_slices

log = logging.getLogger(__name__)


class SegmentationDataModule(L.LightningDataModule):
    """2D segmentation data from a registered folder layout, or volumes read as slices.

    Splits: the layout's own train/val/test; a missing val split is fold ``fold`` of a seeded
    ``n_folds``-fold split of train; a missing test split reuses val (with a warning); ``split_file``
    overrides the layout's splits. Splits act on patients: records that share a ``group`` (a
    patient's cases, a volume's slices) always land on the same side.

    Volume layouts (``volumes``, ``msd``, ``nifti_pairs``: :mod:`datasets.volume_layouts`) list cases;
    they are split by patient, then training and validation cases are served as slices along
    ``inference.slice_axis`` (made as ``run.py --predict`` makes them: ``inference.window`` or the
    volume's percentile range, ``inference.view``, ``inference.context`` neighbours as channels) and
    test cases whole, scored in 3D in millimetres (options: :class:`~datasets.volume_slices.VolumeConfig`).

    Args:
        root: Dataset root folder.
        layout: Folder layout name: folder, polyp, isic2016, isic2017, isic2018 or ham10000.
        num_classes: Number of classes including background.
        in_channels: Image channels given to the model (1 grey, 3 RGB).
        image_size: Training/inference size, int or (height, width).
        batch_size: Batch size of every loader.
        num_workers: DataLoader worker processes.
        train_transforms: Albumentations specs ``[{"name": ..., **kwargs}]`` after the resize; None = default.
        split_file: JSON ``{"train": [ids], "val": [ids], "test": [ids]}`` overriding the layout splits.
        n_folds: Folds for deriving val from train when the layout has no val split.
        fold: Validation fold index in [0, n_folds).
        percent: Fraction of the training set that is labelled (data-efficiency runs), in (0, 1].
        oversample: Repeat the labelled subset to keep the full epoch length when percent < 1.
        seed: Seed of folds, subsampling, shuffling and augmentation.
        class_names: Names of the classes (default class_0..), length num_classes.
        test_split: Which split the test loader serves: test, val or train; ``all``: every sample of
            the dataset, for ``--evaluate`` of a checkpoint on another dataset (nothing is trained).
        pin_memory: Pin batches in page-locked memory (GPU training).
        persistent_workers: Keep worker processes between epochs.
        superpixels: Superpixel maps served with every sample under ``superpixels`` (``source``: ``cache``
            reads precomputed maps, ``cpu`` computes them in the loader workers, ``gpu`` leaves them to
            the LightningModule); None serves none.
        inference: How ``run.py --predict`` applies the trained model to new data (resize or sliding
            windows, the intensity window and slice view of volumes); saved in the checkpoint's
            ``datamodule_hyper_parameters``. None: the defaults of ``InferenceConfig`` (with
            ``sampling: patch``: ``mode: sliding``).
        sampling: ``resize`` (every image resized to ``image_size``) or ``patch``: training on patches
            cut at native resolution with foreground oversampling, validation and test on whole
            images by sliding windows (see :mod:`datasets.patches`).
        patches: Options of ``sampling: patch`` (:class:`~datasets.patches.PatchConfig`); None: defaults.
        volumes: Options of volume layouts (foreground slice repeats, what ``percent`` counts, 3D or
            per-slice test); None: defaults. An error for a layout of 2D images.
    """

    def __init__(
        self,
        root: str,
        layout: str = "folder",
        num_classes: int = 2,
        in_channels: int = 3,
        image_size: int | tuple[int, int] = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        train_transforms: list[dict] | None = None,
        split_file: str | None = None,
        n_folds: int = 5,
        fold: int = 0,
        percent: float = 1.0,
        oversample: bool = False,
        seed: int = 42,
        class_names: list[str] | None = None,
        test_split: str = "test",
        pin_memory: bool = False,
        persistent_workers: bool = False,
        superpixels: SuperpixelConfig | None = None,
        inference: InferenceConfig | None = None,
        sampling: Literal["resize", "patch"] = "resize",
        patches: PatchConfig | None = None,
        volumes: VolumeConfig | None = None,
    ) -> None:
        super().__init__()
        check_args(layout, num_classes, in_channels, batch_size, n_folds, fold, percent, test_split)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes={num_classes}")
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.patching: PatchPlan | None = resolve_patches(sampling, patches, size, superpixels)
        self.save_hyperparameters()
        if self.patching is not None:
            # What `run.py --predict` reads from the checkpoint: the network's input size is the patch,
            # applied by sliding windows unless the config chose an inference mode itself.
            self.hparams["image_size"] = list(self.patching.patch)
            if inference is None:
                self.hparams["inference"] = {"mode": "sliding", "overlap": self.patching.config.overlap}
        self.root = root
        self.layout = layout
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = size
        self.sampling = sampling
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_transforms = train_transforms
        self.split_file = split_file
        self.n_folds = n_folds
        self.fold = fold
        self.percent = percent
        self.oversample = oversample
        self.seed = seed
        self.class_names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
        self.test_split = test_split
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.train_dataset: SegmentationDataset | None = None
        self.val_dataset: SegmentationDataset | None = None
        self.test_dataset: SegmentationDataset | None = None
        self.splits: dict[str, list[SampleRecord]] = {}
        self._extra_maps: ExtraMapsFn | None = None
        self.superpixels = superpixels
        self.inference = inference
        self.is_volume = is_volume_layout(layout)
        if volumes is not None and not self.is_volume:
            raise ValueError(
                f"data.volumes applies to volume layouts (volumes, msd, nifti_pairs), not '{layout}'"
            )
        self.volumes = VolumeConfig.coerce(volumes, VolumeConfig())
        self.slicing = inference_config(inference)
        self.cases: dict[str, list[SampleRecord]] = {}

    @property
    def extra_maps(self) -> ExtraMapsFn | None:
        """Hook giving extra per-image maps (e.g. superpixels) to every dataset; None by default."""
        return self._extra_maps

    @extra_maps.setter
    def extra_maps(self, fn: ExtraMapsFn | None) -> None:
        self._extra_maps = fn
        for dataset in (self.train_dataset, self.val_dataset, self.test_dataset):
            if dataset is not None:
                dataset.extra_maps = fn

    def prepare_data(self) -> None:
        """Nothing to download: datasets must already be on disk."""

    def resolve_splits(self) -> dict[str, list[SampleRecord]]:
        """Compute the train/val/test records (no image is read); volume cases go to ``self.cases``.

        Returns:
            Mapping ``train``/``val``/``test`` to records; ``train`` after subsampling/oversampling.

        Raises:
            FileNotFoundError: If the root or expected files are missing.
            ValueError: If a split is empty or the split file names unknown ids.
        """
        settings = SplitSettings(
            self.layout, self.root, self.split_file, self.n_folds, self.fold, self.seed, self.percent,
            self.oversample, self.test_split, self.volumes if self.is_volume else None, self.slicing,
        )  # fmt: skip
        resolved = resolve_splits(settings)
        self.cases = resolved.cases
        return resolved.served

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of all splits (images and masks are read lazily in ``__getitem__``)."""
        if self.train_dataset is not None:
            return
        self.splits = self.resolve_splits()
        if self.superpixels is not None and self._extra_maps is None:
            hook = make_superpixel_hook(
                self.superpixels, self.root, self.image_size, self.in_channels, self.layout
            )
            if (
                hook is not None
                and self.superpixels.source == "cache"
                and not self.superpixels.compute_missing
            ):
                hook.ensure_complete([r for records in self.splits.values() for r in records])
            self._extra_maps = hook

        def make(records: Sequence[SampleRecord], transform_stage: str) -> SegmentationDataset:
            spatial = None
            if self.patching is None:
                transform = build_transforms(self.train_transforms, self.image_size, transform_stage)
            else:
                transform, spatial = stage_pipeline(self.patching, self.train_transforms, transform_stage)
            return SegmentationDataset(
                records,
                self.num_classes,
                self.in_channels,
                transform,
                transform_stage,
                self.seed,
                self._extra_maps,
                spatial,
                VolumeCache(self.volumes.cache_volumes, self.slicing) if self.is_volume else None,
            )

        self.train_dataset = make(self.splits["train"], "train")
        self.val_dataset = make(self.splits["val"], "val")
        if self._tests_whole_volumes():
            size = None if self.patching is not None else self.image_size
            self.test_dataset = VolumeCaseDataset(
                self.cases[self._test_key], self.slicing, size, self.in_channels, self.num_classes
            )
        elif self.is_volume:
            self.test_dataset = make(expand_to_slices(self.cases[self._test_key], self.slicing), "test")
        else:
            self.test_dataset = make(self.splits[self._test_key], "test")
        log.info("%s", self.describe())

    @property
    def _test_key(self) -> str:
        return "test" if self.test_split == "all" else self.test_split

    def _tests_whole_volumes(self) -> bool:
        """Whether the test loader serves whole volume cases.

        Only to tasks that segment (``predicts_segmentation``), with ``volumes.test_unit: volume``;
        pretext tasks are tested on the cases' slices.
        """
        if not self.is_volume or self.volumes.test_unit != "volume":
            return False
        trainer = getattr(self, "trainer", None)
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        return module is None or bool(getattr(module, "predicts_segmentation", False))

    @property
    def eval_window(self) -> WindowSpec | None:
        """Sliding-window settings of val/test with ``sampling: patch``; None when images are resized."""
        return self.patching.window if self.patching is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the training dataset (for loaders whose sampler was replaced, e.g. DDP)."""
        if self.train_dataset is not None:
            self.train_dataset.set_epoch(epoch)

    def describe(self) -> str:
        """One-line summary of the split sizes for the log."""
        if not self.splits:
            return f"SegmentationDataModule({self.layout} at {self.root}): not set up"
        sizes = ", ".join(f"{name} {len(records)}" for name, records in self.splits.items())
        extra = (
            f", labelled {self.percent:.3g}{' oversampled' if self.oversample else ''}"
            if self.percent < 1
            else ""
        )
        return (
            f"SegmentationDataModule({self.layout} at {self.root}): {sizes}{extra}; "
            f"test loader serves '{self.test_split}'; {self.num_classes} classes, "
            f"{self.in_channels} channels, "
            + (
                f"size {self.image_size}"
                if self.patching is None
                else f"patches {self.patching.patch} at native resolution, sliding-window val/test"
            )
        )

    def _loader(
        self,
        dataset: SegmentationDataset | None,
        sampler: Sampler | None,
        drop_last: bool,
        loader_class: type[DataLoader] = DataLoader,
        batch_size: int | None = None,
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before requesting a dataloader")
        return loader_class(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=collate_segmentation,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Seeded shuffled loader; drops the last partial batch only when there is more than one batch.

        A :class:`~datasets.samplers.ResumableDataLoader`: its position within the epoch is saved in
        every checkpoint, so a run resumed mid-epoch trains on the batches it had not seen yet.
        """
        if self.train_dataset is None:
            raise RuntimeError("call setup() before requesting a dataloader")
        if self.test_split == "all":
            raise ValueError(
                "data.test_split: all gives every sample to the test loader; use it with --evaluate"
            )
        sampler = EpochShuffleSampler(len(self.train_dataset), self.seed)
        drop_last = len(self.train_dataset) > self.batch_size
        return self._loader(self.train_dataset, sampler, drop_last, ResumableDataLoader)

    def val_dataloader(self) -> DataLoader:
        """Validation loader in file order (one whole image per batch with ``sampling: patch``)."""
        return self._loader(self.val_dataset, None, False, batch_size=self._eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Test loader in file order; batches carry ``orig_mask``/``orig_size`` lists (or one whole case)."""
        if isinstance(self.test_dataset, VolumeCaseDataset):
            return DataLoader(
                self.test_dataset, batch_size=1, collate_fn=collate_case, num_workers=self.num_workers
            )
        return self._loader(self.test_dataset, None, False, batch_size=self._eval_batch_size)

    @property
    def _eval_batch_size(self) -> int:
        # Whole native-resolution images differ in size; their windows are batched instead.
        return 1 if self.patching is not None else self.batch_size
