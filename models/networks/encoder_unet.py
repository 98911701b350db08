"""U-Net decoder on any segmentation-models-pytorch encoder (incl. timm ``tu-*`` encoders).

Pretrained encoder weights come only from a local file; nothing is ever downloaded here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from core.checkpoint_io import read_state_dict
from models.networks.blocks import PaddedSegmentationNet
from models.networks.registry import register_model


class EncoderUNet(PaddedSegmentationNet):
    """``smp.Unet`` whose parts are exposed as ``encoder``, ``decoder`` and ``segmentation_head``.

    State-dict keys therefore start with ``encoder.`` / ``decoder.`` / ``segmentation_head.``, which
    is what weight-transfer code relies on. Inputs are padded internally to a multiple of the
    encoder's output stride (32 for 5-stage encoders), so any H, W works.

    Args:
        in_channels: Input image channels.
        num_classes: Output logit channels (any value, e.g. 3 for an inpainting pretext head).
        encoder_name: Any smp encoder name, e.g. ``"resnet18"`` or ``"tu-tf_efficientnetv2_s"``.
        decoder_channels: Widths of the five decoder stages.
        encoder_weights: ``None`` for random initialisation, or a path to a local file, see
            :func:`load_encoder_weights`.

    Raises:
        FileNotFoundError: If ``encoder_weights`` is not an existing file.
        ValueError: If the file's keys or shapes do not match the encoder.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        encoder_name: str = "resnet18",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        # smp would download for a hub name, so it is always built randomly initialised
        model = smp.Unet(
            encoder_name=encoder_name,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            decoder_channels=tuple(decoder_channels),
        )
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.segmentation_head = model.segmentation_head
        self.size_divisor = int(self.encoder.output_stride)
        if encoder_weights is not None:
            load_encoder_weights(self.encoder, encoder_weights)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Network body on an input whose H, W are multiples of the encoder's output stride."""
        return self.segmentation_head(self.decoder(self.encoder(x)))


def read_encoder_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read encoder weights from a local file (state dict, checkpoint or ``.safetensors``).

    Raises:
        FileNotFoundError: If ``path`` is not an existing file (hub names such as ``"imagenet"``
            are deliberately not supported).
        ValueError: If the file holds no tensors.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"encoder_weights={str(path)!r} is not an existing file: encoder weights must be a local "
            "file (a state dict, or a dict with 'state_dict'); hub names such as 'imagenet' are never "
            "downloaded, and None means random initialisation"
        )
    return read_state_dict(path)


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``encoder`` with strict key and shape checking.

    Keys may carry an ``encoder.`` prefix (a whole-model state dict filtered to the encoder); it is
    stripped only when every key has it.

    Args:
        encoder: The encoder module to fill in place.
        path: Local file, see :func:`read_state_dict`.

    Raises:
        FileNotFoundError: If ``path`` is not an existing file.
        ValueError: If keys are missing or unexpected, or a tensor's shape differs; the message
            lists them.
    """
    state = read_encoder_state(path)
    prefix = "encoder."
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}: encoder weights do not match the encoder: missing keys {missing[:10]} "
            f"({len(missing)} in all), unexpected keys {unexpected[:10]} ({len(unexpected)} in all)"
        )
    wrong_shape = [
        f"{k}: file {tuple(v.shape)} vs encoder {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if wrong_shape:
        raise ValueError(f"{path}: encoder weight shapes differ (check in_channels): {wrong_shape[:10]}")
    encoder.load_state_dict(state, strict=True)


@register_model("encoder_unet")
def encoder_unet(
    in_channels: int = 3,
    num_classes: int = 2,
    encoder_name: str = "resnet18",
    decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
    encoder_weights: str | None = None,
) -> EncoderUNet:
    """Build :class:`EncoderUNet` (registry name ``encoder_unet``)."""
    return EncoderUNet(in_channels, num_classes, encoder_name, decoder_channels, encoder_weights)
