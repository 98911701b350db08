"""What ``data.sampling: patch`` changes in each stage's pipeline, and the evaluation windows.

* train: a :class:`~datasets.patches.PatchSampler` cuts one patch per sample at native resolution,
  then the albumentations pipeline of ``build_transforms`` sized to the patch applies the augmentations
  (its resize is the identity unless the patch was zoomed to a target spacing or by scale jitter).
* val / test: the whole image at native resolution (zoomed to the target spacing when one is set),
  one image per batch; the task module runs sliding-window inference with :class:`WindowSpec`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import albumentations as A

from datasets.patch_scale import EvalRescale, ScaleSource
from datasets.patches import PatchConfig, PatchSampler, SpatialStep, check_sampling
from datasets.preprocess import NORM_MEAN, NORM_STD
from datasets.transforms import build_transforms


@dataclass(frozen=True)
class WindowSpec:
    """How a patch-trained model is applied to whole images in validation and test.

    Attributes:
        size: Window ``(height, width)``: the patch size.
        overlap: Fraction of a window shared by neighbours.
        batch_size: Windows per forward pass.
        pad_value: Padding of images smaller than the window, in normalised network-input units.
    """

    size: tuple[int, int]
    overlap: float
    batch_size: int
    pad_value: float


@dataclass(frozen=True)
class PatchPlan:
    """A resolved ``data.patches`` block.

    Attributes:
        config: The block.
        patch: Patch ``(height, width)``.
        scales: Per-image zoom to ``target_spacing_mm`` (None: native resolution).
    """

    config: PatchConfig
    patch: tuple[int, int]
    scales: ScaleSource | None

    @property
    def window(self) -> WindowSpec:
        """The sliding-window settings of validation and test."""
        c = self.config
        pad = (c.pad_value - NORM_MEAN) / NORM_STD
        return WindowSpec(self.patch, c.overlap, c.sw_batch_size, pad)


def as_patch_config(patches: PatchConfig | dict[str, Any] | None) -> PatchConfig:
    """The block from a config object, a plain mapping (checkpoint hyper-parameters) or None (defaults).

    Raises:
        ValueError: For a key that is not a field.
    """
    if patches is None:
        return PatchConfig()
    if isinstance(patches, PatchConfig):
        return patches
    names = [f.name for f in dataclasses.fields(PatchConfig)]
    unknown = sorted(set(patches) - set(names))
    if unknown:
        raise ValueError(f"unknown key 'data.patches.{unknown[0]}'; expected one of {names}")
    return PatchConfig(**patches)


def resolve_patches(
    sampling: str,
    patches: PatchConfig | dict[str, Any] | None,
    image_size: tuple[int, int],
    superpixels: Any = None,
) -> PatchPlan | None:
    """Check the sampling options and resolve them; None for ``sampling: resize``.

    Args:
        sampling: ``resize`` or ``patch``.
        patches: The ``data.patches`` block (None: defaults).
        image_size: The data's ``image_size`` (the patch size when ``patch_size`` is None).
        superpixels: The ``data.superpixels`` block, or None.

    Raises:
        ValueError: One line naming the bad key and what was expected.
    """
    if sampling == "resize" and patches is None:
        return None
    check_sampling(sampling, as_patch_config(patches) if patches is not None else None)
    config = as_patch_config(patches)
    if superpixels is not None and superpixels.source != "gpu" and superpixels.size is None:
        raise ValueError(
            "data.superpixels.size must be set with data.sampling: patch (maps are made per whole image "
            "at this side and cropped with each patch; e.g. the images' native side)"
        )
    scales = None
    if config.target_spacing_mm is not None:
        scales = ScaleSource(config.target_spacing_mm, config.spacing_mm, config.spacing_file)
    return PatchPlan(config, config.size(image_size), scales)


def stage_pipeline(
    plan: PatchPlan, train_spec: list[dict] | None, stage: str
) -> tuple[A.Compose | None, SpatialStep | None]:
    """The albumentations pipeline and the spatial step of one stage in patch mode.

    Args:
        plan: The resolved patch options.
        train_spec: The ``train_transforms`` spec (None: the default augmentations).
        stage: ``train``, ``val`` or ``test``.

    Returns:
        ``(transform, spatial)``: for train the patch-sized augmentation pipeline and the patch
        sampler; for val/test no transform (native resolution) and the zoom to the target spacing
        when one is set.
    """
    if stage == "train":
        sampler = PatchSampler(plan.config, plan.patch, plan.scales)
        return build_transforms(train_spec, plan.patch, "train"), sampler
    return None, (EvalRescale(plan.scales) if plan.scales is not None else None)
