"""Per-sample superpixel maps for the Dataset: read from the cache or computed in the loader worker.

The hook and ``sp_generation.py`` share :func:`compute_map`, so a cached map equals the map the
loader would compute with the same config.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from datasets.records import SampleRecord
from datasets.superpixels.cache import SuperpixelCache, resize_for_superpixels
from datasets.superpixels.config import SuperpixelConfig

DEFAULT_CACHE_DIRNAME = ".superpixel_cache"


def default_cache_dir(data_root: str | Path) -> Path:
    """The cache root used when ``superpixels.cache_dir`` is None: ``<data root>/.superpixel_cache``."""
    return Path(data_root) / DEFAULT_CACHE_DIRNAME


def compute_map(
    image: np.ndarray,
    method: str,
    backend: str,
    params: dict[str, Any],
    shape: tuple[int, int],
    body_mask: bool = False,
) -> tuple[np.ndarray, int]:
    """Compute one image's superpixel map at ``shape`` with a CPU backend.

    Args:
        image: Float image in ``[0, 1]`` at its original size.
        method: ``slic`` or ``felzenszwalb``.
        backend: CPU engine backend (``skimage`` or ``numba``).
        params: Algorithm parameters passed to the engine.
        shape: ``(H, W)`` the image is resized to before computing.
        body_mask: Restrict superpixels to the body mask of the resized image.

    Returns:
        ``(labels, count)``: int32 map of ``shape`` and its number of real superpixels.

    Shape:
        image: ``(H0, W0, C)``; labels: ``shape``.
    """
    from datasets.superpixels.engine import superpixels

    resized = resize_for_superpixels(image, shape)
    mask = body_mask_of(resized)[None] if body_mask else None
    labels, counts = superpixels(resized[None], method=method, backend=backend, mask=mask, **params)
    return np.asarray(labels[0], dtype=np.int32), int(counts[0])


def body_mask_of(image: np.ndarray) -> np.ndarray:
    """Foreground (body) mask of one image, as used for SSL-ALPNet pseudolabels.

    Args:
        image: Float image ``(H, W, C)`` in ``[0, 1]``.

    Returns:
        Bool ``(H, W)`` mask.
    """
    from datasets.superpixels.engine import body_mask

    return np.asarray(body_mask(image), dtype=bool)


def resize_labels_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map with pixel-centre alignment.

    Args:
        labels: Integer map ``(h, w)``.
        shape: Target ``(H, W)``.

    Returns:
        Map of ``shape`` with the input's dtype (the input itself if the shape already matches).
    """
    height, width = shape
    if labels.shape == (height, width):
        return labels
    rows = np.minimum(
        ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(np.int64), labels.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(np.int64), labels.shape[1] - 1
    )
    return labels[rows[:, None], cols[None, :]]


class SuperpixelHook:
    """Picklable callable ``(record, image) -> {"superpixels": int32 (H, W)}`` for DataLoader workers.

    Args:
        config: The ``data.superpixels`` section (``source`` ``cache`` or ``cpu``).
        data_root: Dataset root (default cache location, and the generation command shown).
        image_size: The data's image size, used when ``config.size`` is None.
        channels: Channels of the images the hook receives.
        layout: Dataset layout name, only used to print the generation command.
    """

    def __init__(
        self,
        config: SuperpixelConfig,
        data_root: str | Path,
        image_size: int | tuple[int, int],
        channels: int,
        layout: str | None = None,
    ) -> None:
        if config.source not in ("cache", "cpu"):
            raise ValueError(f"SuperpixelHook handles source 'cache' or 'cpu', got {config.source!r}")
        self.config = config
        self.data_root = Path(data_root)
        self.shape = config.target_shape(image_size)
        self.channels = channels
        self.layout = layout
        self.cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir(data_root)
        self.cache = None
        if config.source == "cache":
            self.cache = SuperpixelCache(
                self.cache_root,
                config.method,
                config.backend,
                config.params,
                self.shape,
                channels,
                config.body_mask,
            )

    def __call__(self, record: SampleRecord, image: np.ndarray) -> dict[str, np.ndarray]:
        """Return the map of ``record`` at the image's own ``(H, W)``.

        Raises:
            ValueError: If the image does not have ``channels`` channels.
            FileNotFoundError: With ``source: cache``, if the map is missing and
                ``compute_missing`` is False; the message gives the generation command.
        """
        if image.ndim != 3 or image.shape[2] != self.channels:
            raise ValueError(
                f"sample '{record.id}' ({record.image}): expected an (H, W, {self.channels}) image, "
                f"got shape {image.shape}"
            )
        labels = self.cache.get(record.id) if self.cache is not None else None
        if labels is None:
            if self.cache is not None and not self.config.compute_missing:
                raise FileNotFoundError(self._missing_message([record.id]))
            labels, count = self.compute(image)
            if self.cache is not None:
                self.cache.put(record.id, labels, count=count)
        return {"superpixels": resize_labels_nearest(labels, image.shape[:2]).astype(np.int32, copy=False)}

    def compute(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """Compute the map of an original-size image at the hook's target shape."""
        c = self.config
        return compute_map(image, c.method, c.backend, c.params, self.shape, c.body_mask)

    def missing(self, records: Iterable[SampleRecord]) -> list[str]:
        """Ids of ``records`` without a valid cached map (empty for ``source: cpu``)."""
        if self.cache is None:
            return []
        return [r.id for r in records if self.cache.get(r.id) is None]

    def ensure_complete(self, records: Iterable[SampleRecord]) -> None:
        """Fail early (e.g. in ``DataModule.setup``) if cached maps are missing.

        Raises:
            FileNotFoundError: Listing how many maps are missing and the command that makes them,
                unless ``compute_missing`` is set.
        """
        if self.cache is None or self.config.compute_missing:
            return
        missing = self.missing(records)
        if missing:
            raise FileNotFoundError(self._missing_message(missing))

    def generation_command(self) -> str:
        """The ``sp_generation.py`` command that fills this hook's cache."""
        c = self.config
        args = ["python", "sp_generation.py", "--root", str(self.data_root)]
        if self.layout:
            args += ["--layout", self.layout]
        args += ["--out", str(self.cache_root), "--method", c.method, "--backend", c.backend]
        args += ["--size", str(self.shape[0]), str(self.shape[1]), "--channels", str(self.channels)]
        for name, value in sorted(c.params.items()):
            args += ["--param", f"{name}={_json_value(value)}"]
        if c.body_mask:
            args.append("--body-mask")
        return shlex.join(args)

    def _missing_message(self, missing: list[str]) -> str:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        return (
            f"{len(missing)} superpixel map(s) missing from the cache {self.cache.folder} ({shown}). "
            f"Make them with:\n  {self.generation_command()}\n"
            "or run `python sp_generation.py --cfg <your config>.yaml`, "
            "or set data.superpixels.compute_missing: true / source: cpu."
        )


def _json_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def make_superpixel_hook(
    config: SuperpixelConfig,
    data_root: str | Path,
    image_size: int | tuple[int, int],
    channels: int,
    layout: str | None = None,
) -> SuperpixelHook | None:
    """Build the per-sample superpixel hook for a dataset.

    Args:
        config: The ``data.superpixels`` section.
        data_root: Dataset root folder.
        image_size: The data's image size (int or ``(H, W)``), used when ``config.size`` is None.
        channels: Channels of the images given to the hook.
        layout: Dataset layout name (only for the generation command in error messages).

    Returns:
        A picklable :class:`SuperpixelHook` for ``source`` ``cache``/``cpu``; None for ``gpu``
        (the LightningModule computes maps on the device after augmentation).
    """
    if config.source == "gpu":
        return None
    return SuperpixelHook(config, data_root, image_size, channels, layout)
