"""Re-exports of the segmentation losses, kept so ``models.losses.segmentation`` imports still work.

The code lives in :mod:`models.losses.pixelwise` (CE, BCE, focal, OHEM CE) and
:mod:`models.losses.overlap` (soft Dice, Tversky, Jaccard, ``soft_overlap``).
"""

from __future__ import annotations

from models.losses.overlap import (
    DiceLoss,
    JaccardLoss,
    TverskyLoss,
    dice_loss,
    jaccard_loss,
    soft_overlap,
    tversky_loss,
)
from models.losses.pixelwise import (
    BCELoss,
    CrossEntropyLoss,
    FocalLoss,
    OhemCrossEntropyLoss,
    binary_cross_entropy_loss,
    cross_entropy_loss,
    focal_loss,
    ohem_cross_entropy_loss,
)

__all__ = [
    "BCELoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "JaccardLoss",
    "OhemCrossEntropyLoss",
    "TverskyLoss",
    "binary_cross_entropy_loss",
    "cross_entropy_loss",
    "dice_loss",
    "focal_loss",
    "jaccard_loss",
    "ohem_cross_entropy_loss",
    "soft_overlap",
    "tversky_loss",
]
