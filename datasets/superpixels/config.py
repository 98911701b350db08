"""The ``data.superpixels`` config section: where superpixel maps come from and how they are made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SOURCES = ("cache", "cpu", "gpu")
METHODS = ("slic", "felzenszwalb")


@dataclass
class SuperpixelConfig:
    """How the superpixel maps of a dataset are obtained.

    Every field except ``source``, ``cache_dir`` and ``compute_missing`` changes the maps, so all of
    them (with the engine's defaults filled in) go into the cache key: a map made with other settings
    is never reused.
    """

    source: Literal["cache", "cpu", "gpu"] = "cpu"
    """``cache``: read maps written by ``sp_generation.py``; ``cpu``: compute them in the DataLoader
    workers; ``gpu``: the LightningModule computes them on the device after augmentation."""

    method: Literal["slic", "felzenszwalb"] = "slic"
    """Superpixel algorithm."""

    backend: str = "numba"
    """Engine backend: ``skimage``, ``numba`` (CPU) or ``torch`` (batched, any device)."""

    params: dict[str, Any] = field(default_factory=dict)
    """Algorithm parameters, e.g. ``{n_segments: 512, compactness: 10}`` for SLIC or
    ``{scale: 1, sigma: 1, min_size: 400}`` for Felzenszwalb; omitted ones take the engine default."""

    size: int | None = None
    """Square side the image is resized to (linear, anti-aliased) before computing; None = the
    data's ``image_size``. The map is nearest-resized back to the image afterwards."""

    cache_dir: str | None = None
    """Root folder of the on-disk cache; None = ``<data root>/.superpixel_cache``."""

    compute_missing: bool = False
    """With ``source: cache``, compute and store maps missing from the cache instead of failing."""

    body_mask: bool = False
    """Restrict superpixels to a body mask (threshold, largest component, holes filled); pixels
    outside get label 0 (SSL-ALPNet pseudolabels)."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"superpixels.source must be one of {SOURCES}, got {self.source!r}")
        if self.method not in METHODS:
            raise ValueError(f"superpixels.method must be one of {METHODS}, got {self.method!r}")
        if self.size is not None and (isinstance(self.size, bool) or int(self.size) < 8):
            raise ValueError(f"superpixels.size must be an integer >= 8 or None, got {self.size!r}")
        if not isinstance(self.params, dict):
            raise ValueError(f"superpixels.params must be a mapping, got {type(self.params).__name__}")

    def target_shape(self, image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
        """Return the ``(H, W)`` the image is resized to before computing its map.

        Args:
            image_size: The data's image size (int for square, or ``(H, W)``), used when
                ``size`` is None.

        Returns:
            ``(size, size)`` if ``size`` is set, else ``image_size`` as a pair.

        Raises:
            ValueError: If ``image_size`` is not an int or a pair of positive ints.
        """
        if self.size is not None:
            return (int(self.size), int(self.size))
        return as_shape(image_size)


def as_shape(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Turn an int or a pair into a validated ``(H, W)`` tuple.

    Args:
        image_size: Side of a square, or ``(H, W)``.

    Returns:
        ``(H, W)`` of positive ints.

    Raises:
        ValueError: If the value is not an int or a pair of positive ints.
    """
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        shape = (image_size, image_size)
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        shape = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"image_size must be an int or a pair (H, W), got {image_size!r}")
    if min(shape) < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return shape
