"""Validation and test of patch-trained models: sliding windows over each whole image.

With ``data.sampling: patch`` the DataModule serves whole images at native resolution and names its
windows (``datamodule.eval_window``, a :class:`datasets.patch_pipeline.WindowSpec`); the
segmentation families then call :func:`eval_logits` instead of ``module(image)``. The windows'
probabilities are blended exactly as ``run.py --predict --mode sliding`` blends them (the same
:func:`~models.inference.sliding_window.sliding_window_inference`, on ``predict_log_probs``), so the
test stage scores the masks prediction writes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from models.inference.sliding_window import sliding_window_inference


def data_eval_window(module: Any) -> Any:
    """The attached DataModule's ``eval_window`` (None: no trainer, no DataModule, or resize mode)."""
    trainer = getattr(module, "_trainer", None)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    return getattr(datamodule, "eval_window", None)


def sliding_log_probs(module: Any, image: Tensor, window: Any) -> Tensor:
    """Class log-probabilities of whole images, window by window, Gaussian-blended.

    Args:
        module: A segmentation task module (``predict_log_probs``).
        image: ``[B, C, H, W]`` normalised images of any size.
        window: A :class:`datasets.patch_pipeline.WindowSpec`.

    Returns:
        ``[B, max(K, 2), H, W]`` log-probabilities.
    """
    probs = sliding_window_inference(
        image,
        lambda tiles: module.predict_log_probs(tiles).exp(),
        window=window.size,
        overlap=window.overlap,
        batch_size=window.batch_size,
        pad_value=window.pad_value,
    )
    return probs.clamp_min(torch.finfo(torch.float32).tiny).log()


def eval_logits(module: Any, image: Tensor, head_channels: int) -> Tensor:
    """The evaluation output of a segmentation module: ``module(image)``, or sliding windows in patch mode.

    Args:
        module: A segmentation task module.
        image: ``[B, C, H, W]`` normalised images.
        head_channels: Output channels of the network (1: a binary sigmoid head).

    Returns:
        Logits ``[B, head_channels, H, W]`` whose argmax (sigmoid > 0.5 for one channel) is the
        prediction; in patch mode the blended log-probabilities (for one channel their logit), so a
        loss on them is the loss of the blended probabilities.
    """
    window = data_eval_window(module)
    if window is None:
        return module(image)
    log_probs = sliding_log_probs(module, image, window)
    if head_channels == 1:
        return log_probs[:, 1:] - log_probs[:, :1]
    return log_probs
