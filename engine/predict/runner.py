"""Images -> class log-probabilities at their original size: resize or sliding windows, flip TTA, ensembles.

Each image goes through the preprocessing of validation and test (:func:`datasets.preprocess.eval_tensor`).
In ``resize`` mode the network sees the image at its training size and its log-probabilities are
resized back bilinearly, as the test stage resizes its logits, so a single checkpoint without TTA
gives exactly the test's masks. In ``sliding`` mode windows of the training size run at the native
resolution (:func:`models.inference.sliding_window_inference`). Flip TTA and ensembles average
probabilities (computed in log space: ``logsumexp - log n``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.preprocess import NORM_MEAN, NORM_STD, eval_tensor
from engine.predict.checkpoints import PredictionModel
from models.inference import sliding_window_inference

# Flip dimensions of the TTA variants ([] = the image itself).
TTA_FLIPS: dict[str, list[tuple[int, ...]]] = {"none": [()], "flip": [(), (-1,), (-2,)]}
# Normalised value of a zero intensity: the padding of images smaller than a sliding window.
PAD_VALUE = (0.0 - NORM_MEAN) / NORM_STD


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``.

    Raises:
        ValueError: For ``cuda`` on a machine without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)


def mean_of_probabilities(log_probs: Sequence[Tensor]) -> Tensor:
    """Log of the mean of the probabilities given as log-probabilities (stable, exact for one)."""
    if len(log_probs) == 1:
        return log_probs[0]
    return torch.logsumexp(torch.stack(list(log_probs)), dim=0) - math.log(len(log_probs))


class Predictor:
    """Class log-probabilities of images from one or several checkpoints.

    Args:
        models: Checkpoints to average (same classes and channels; see ``check_ensemble``).
        tta: ``none`` or ``flip`` (horizontal and vertical flips averaged with the image itself).
        mode: ``resize`` or ``sliding``; None takes each checkpoint's recorded ``inference.mode``.
        overlap: Sliding-window overlap; None takes each checkpoint's.
        batch_size: Images (resize) or windows (sliding) per forward pass.
        device: Torch device.
        amp: Autocast (float16 on CUDA, bfloat16 on CPU).
    """

    def __init__(
        self,
        models: Sequence[PredictionModel],
        tta: str = "none",
        mode: str | None = None,
        overlap: float | None = None,
        batch_size: int = 4,
        device: torch.device | str = "cpu",
        amp: bool = False,
    ) -> None:
        if tta not in TTA_FLIPS:
            raise ValueError(f"unknown tta {tta!r}; expected one of {sorted(TTA_FLIPS)}")
        self.models = list(models)
        self.flips = TTA_FLIPS[tta]
        self.mode = mode
        self.overlap = overlap
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.amp = amp
        for model in self.models:
            model.module.to(self.device).eval()

    @property
    def in_channels(self) -> int:
        """Input channels of the (agreeing) checkpoints."""
        return self.models[0].in_channels

    @property
    def num_classes(self) -> int:
        """Output classes of the (agreeing) checkpoints."""
        return self.models[0].num_classes

    def predict(self, images: Sequence[np.ndarray]) -> list[Tensor]:
        """Log-probabilities of each image at its own size.

        Args:
            images: float32 ``H x W x C`` in ``[0, 1]`` (``read_image``'s output), sizes may differ.

        Returns:
            One float32 CPU tensor ``[num_classes, H, W]`` per image.
        """
        per_model = [self._model_log_probs(model, images) for model in self.models]
        return [mean_of_probabilities([out[i] for out in per_model]) for i in range(len(images))]

    def _model_log_probs(self, model: PredictionModel, images: Sequence[np.ndarray]) -> list[Tensor]:
        mode = self.mode or model.inference.mode
        if mode == "resize":
            return self._resized(model, images)
        if mode == "sliding":
            return [self._sliding(model, image) for image in images]
        raise ValueError(f"unknown inference mode {mode!r}; expected 'resize' or 'sliding'")

    def _resized(self, model: PredictionModel, images: Sequence[np.ndarray]) -> list[Tensor]:
        out: list[Tensor] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            batch = torch.stack([eval_tensor(image, model.image_size) for image in chunk]).to(self.device)
            log_probs = self._forward(model, batch)
            for i, image in enumerate(chunk):
                size = tuple(int(s) for s in image.shape[:2])
                resized = F.interpolate(log_probs[i : i + 1], size=size, mode="bilinear", align_corners=False)
                # Renormalise (a per-pixel shift: the argmax, hence the mask, is unchanged).
                out.append(resized[0].log_softmax(dim=0).cpu())
        return out

    def _sliding(self, model: PredictionModel, image: np.ndarray) -> Tensor:
        overlap = model.inference.overlap if self.overlap is None else self.overlap
        probs = sliding_window_inference(
            eval_tensor(image, None).to(self.device),
            lambda tiles: self._forward(model, tiles).exp(),
            window=model.image_size,
            overlap=overlap,
            batch_size=self.batch_size,
            pad_value=PAD_VALUE,
        )
        return probs.clamp_min(torch.finfo(torch.float32).tiny).log().cpu()

    @torch.no_grad()
    def _forward(self, model: PredictionModel, batch: Tensor) -> Tensor:
        """TTA-averaged log-probabilities ``[B, K, h, w]`` of a preprocessed batch (float32)."""
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        outputs = []
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp):
            for dims in self.flips:
                x = batch.flip(dims) if dims else batch
                log_probs = model.module.predict_log_probs(x).float()
                outputs.append(log_probs.flip(dims) if dims else log_probs)
        return mean_of_probabilities(outputs)
