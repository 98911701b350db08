"""Shared parts of the masked-superpixel reconstruction tasks (inpainting, colorization).

The masker built from hyper-parameters, the check against the data's superpixel source, the
once-per-epoch clamp warning and the masked forward.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from pretext.superpixel_masking import SuperpixelMasker


def masker_from_hparams(hp: Any) -> SuperpixelMasker:
    """The masker a pretext module's hyper-parameters describe (``n_masked``, ``superpixel_*``, ...)."""
    return SuperpixelMasker(
        n_masked=hp.n_masked,
        mask_ratio=hp.mask_ratio,
        on_excess=hp.on_excess,
        source=hp.superpixel_source,
        method=hp.superpixel_method,
        params=dict(hp.superpixel_params or {}),
        seed=hp.seed,
    )


class MaskedReconstruction:
    """Mixin of the pretext tasks that reconstruct masked superpixels (inpainting, colorization).

    The module has ``self.net`` (image -> image) and ``self.masker``.
    """

    def setup(self, stage: str) -> None:
        """Check the data's superpixel source against ours and learn k (for error messages)."""
        match_data_config(self.masker, getattr(self.trainer, "datamodule", None))

    def on_train_epoch_end(self) -> None:
        """Warn once per epoch with the share of clamped images (``on_excess: clamp``)."""
        self.masker.report_clamped("train", self.current_epoch)
        super().on_train_epoch_end()  # type: ignore[misc]

    def on_validation_epoch_end(self) -> None:
        """Warn once per validation with the share of clamped images (``on_excess: clamp``)."""
        self.masker.report_clamped("val", self.current_epoch)
        super().on_validation_epoch_end()  # type: ignore[misc]

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """The network's output clamped to ``[-1, 1]`` inside the mask, zero outside.

        Shape:
            image ``[B, C, H, W]`` (masked or partly grey), mask ``[B, 1, H, W]`` float -> ``[B, C, H, W]``.
        """
        return self.net(image).clamp(-1.0, 1.0) * mask


def match_data_config(masker: SuperpixelMasker, datamodule: Any) -> None:
    """Check a masker against ``datamodule.superpixels`` and take k from it for messages.

    Args:
        masker: The module's masker (updated in place).
        datamodule: The attached DataModule, or None (nothing to check).

    Raises:
        ValueError: When the data computes maps on the device (``source: gpu``) but the masker
            reads them from the batch, or the reverse.
    """
    config = getattr(datamodule, "superpixels", None)
    if config is None:
        return
    if (config.source == "gpu") != (masker.source == "gpu"):
        raise ValueError(
            f"data.superpixels.source={config.source!r} but model.superpixel_source={masker.source!r}: "
            "use 'gpu' for both, or 'cache'/'cpu' with 'batch'"
        )
    if masker.k is None:
        masker.k = config.params.get("n_segments")
