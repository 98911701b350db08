"""Pixel-size normalisation of patch training: per-image zoom to ``target_spacing_mm``.

Images of different resolutions (a 512 x 512 scan at 0.7 mm beside a 256 x 256 one at 1.4 mm) train
at one pixel size when ``data.patches.target_spacing_mm`` is set: each image's zoom is its own
spacing divided by the target. Training patches cut ``patch / zoom`` image pixels (resized to the
patch by the pipeline); validation and test images are zoomed whole (:class:`EvalRescale`), and test
logits are resized back, so test metrics stay at each image's original resolution.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from datasets.records import SampleRecord


class ScaleSource:
    """Zoom factor of each image from its pixel spacing.

    Args:
        target_spacing_mm: Pixel size to train and evaluate at.
        spacing_mm: One pixel size for every image, or None to read ``spacing_file``.
        spacing_file: JSON ``{sample id: pixel size in mm}``.

    Raises:
        FileNotFoundError: If ``spacing_file`` does not exist.
        ValueError: If the file is not a mapping of positive numbers.
    """

    def __init__(
        self, target_spacing_mm: float, spacing_mm: float | None = None, spacing_file: str | None = None
    ) -> None:
        self.target = float(target_spacing_mm)
        self.spacing_mm = spacing_mm
        self.spacing_file = spacing_file
        self.table: dict[str, float] = {}
        if spacing_file is not None:
            self.table = _read_spacing_file(Path(spacing_file))

    def zoom(self, record: SampleRecord) -> float:
        """``spacing / target`` of one image (> 1 enlarges it).

        Raises:
            ValueError: If ``spacing_file`` has no entry for the sample.
        """
        if self.spacing_mm is not None:
            return float(self.spacing_mm) / self.target
        if record.id not in self.table:
            raise ValueError(
                f"data.patches.spacing_file {self.spacing_file} has no spacing for sample '{record.id}' "
                f'({record.image}); add it as "{record.id}": <mm>'
            )
        return self.table[record.id] / self.target


def _read_spacing_file(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise FileNotFoundError(f"data.patches.spacing_file {path} does not exist")
    table = json.loads(path.read_text())
    if not isinstance(table, dict):
        raise ValueError(f"data.patches.spacing_file {path} must hold a JSON object {{id: mm}}")
    bad = [k for k, v in table.items() if not isinstance(v, (int, float)) or v <= 0]
    if bad:
        raise ValueError(f"data.patches.spacing_file {path}: spacing of {bad[:5]} must be a positive number")
    return {str(k): float(v) for k, v in table.items()}


def zoom_array(array: np.ndarray, size: tuple[int, int], labels: bool) -> np.ndarray:
    """Resize ``(H, W[, C])`` to ``size`` (linear for images, nearest for label maps), keeping C."""
    interpolation = cv2.INTER_NEAREST if labels else cv2.INTER_LINEAR
    out = cv2.resize(array, (size[1], size[0]), interpolation=interpolation)
    return out.reshape(*size, *array.shape[2:])


class EvalRescale:
    """Spatial step of validation/test with a target spacing: the whole image zoomed to it.

    Args:
        scales: Per-image zoom.
    """

    def __init__(self, scales: ScaleSource) -> None:
        self.scales = scales

    def __call__(
        self, targets: dict[str, np.ndarray], record: SampleRecord, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Zoom ``image``, ``mask`` and the extra maps of one sample (``rng`` is not used)."""
        zoom = self.scales.zoom(record)
        height, width = targets["image"].shape[:2]
        size = (max(1, round(height * zoom)), max(1, round(width * zoom)))
        return {name: zoom_array(a, size, labels=name != "image") for name, a in targets.items()}
