"""Albumentations pipelines built from config specs, and per-sample seeding of their randomness."""

from __future__ import annotations

import difflib
import inspect
import random
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

STAGES = ("train", "val", "test")

# Mild geometry and photometry suited to dermoscopy/endoscopy/radiology alike.
DEFAULT_TRAIN_SPEC: tuple[dict[str, Any], ...] = (
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "VerticalFlip", "p": 0.5},
    {"name": "Affine", "rotate": (-15, 15), "scale": (0.9, 1.1), "p": 0.5},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2, "p": 0.5},
)


def _transform_names() -> list[str]:
    return sorted(
        name
        for name, obj in vars(A).items()
        if inspect.isclass(obj) and issubclass(obj, A.BasicTransform) and not name.startswith("_")
    )


def transform_from_spec(spec: Mapping[str, Any]) -> A.BasicTransform:
    """Instantiate one albumentations transform from ``{"name": ClassName, **kwargs}``.

    Args:
        spec: Mapping with the transform class name under ``name`` and its keyword arguments.

    Returns:
        The transform instance.

    Raises:
        ValueError: If ``name`` is missing, unknown (the message lists close matches), or the
            arguments are rejected by the transform.
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"transform spec {spec!r} must be a mapping with a 'name' key")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    name = spec["name"]
    known = _transform_names()
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(f"unknown albumentations transform '{name}'{hint}")
    cls = getattr(A, name)
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            # albumentations only warns about unknown arguments; a typo must not pass silently.
            raise ValueError(
                f"transform '{name}' got unknown arguments {unknown}; accepted: {sorted(params)}"
            )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # pydantic ValidationError is a ValueError
        raise ValueError(f"invalid arguments for transform '{name}' {kwargs}: {err}") from err


def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be an int or (height, width) of positive ints, got {image_size}")
    return size  # type: ignore[return-value]


def build_transforms(
    spec: list[dict] | None,
    image_size: int | tuple[int, int],
    stage: str,
    additional_targets: Mapping[str, str] | None = None,
) -> A.Compose:
    """Build the pipeline of one stage.

    ``train`` resizes to ``image_size`` then applies ``spec`` (``DEFAULT_TRAIN_SPEC`` when None);
    ``val``/``test`` only resize. Images use linear and masks nearest interpolation (set on the
    Compose, so it also holds for every transform of the spec).

    Args:
        spec: List of ``{"name": ClassName, **kwargs}`` dicts, or None for the default.
        image_size: Output size, int or ``(height, width)``.
        stage: ``train``, ``val`` or ``test``.
        additional_targets: Extra targets, e.g. ``{"superpixels": "mask"}``; more can be added later
            with ``Compose.add_targets`` (the dataset does this for its extra maps).

    Returns:
        An ``albumentations.Compose``.

    Raises:
        ValueError: For an unknown stage, bad image size or bad spec entry.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage '{stage}'; expected one of {STAGES}")
    height, width = _as_size(image_size)
    steps: list[A.BasicTransform] = [
        A.Resize(height, width, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
    ]
    if stage == "train":
        entries = DEFAULT_TRAIN_SPEC if spec is None else spec
        steps += [transform_from_spec(entry) for entry in entries]
    return A.Compose(
        steps,
        additional_targets=dict(additional_targets or {}),
        mask_interpolation=cv2.INTER_NEAREST,
        seed=0,
    )


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Derive an independent 32-bit seed for one sample of one epoch.

    Args:
        seed: Run seed.
        epoch: Epoch number.
        index: Dataset index.

    Returns:
        Integer in ``[0, 2**32)``, a hash of the three numbers.
    """
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def seed_transform(transform: A.BaseCompose, seed: int) -> None:
    """Reset the random state a pipeline draws from.

    Albumentations >= 2.0 keeps its own generators (``set_random_seed``); older versions draw from
    the global ``random``/``numpy`` state, which is then seeded instead.

    Args:
        transform: The pipeline.
        seed: Seed of this call.
    """
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)
    else:
        random.seed(seed)
        np.random.seed(seed)
