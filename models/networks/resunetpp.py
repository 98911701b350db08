"""ResUNet++ (Jha et al., IEEE ISM 2019): ResUNet with squeeze-excitation, ASPP and attention gates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.blocks import ASPP, AttentionGate, PaddedSegmentationNet, SqueezeExcite
from models.networks.registry import register_model
from models.networks.resunet import PreActResidualUnit

ASPP_RATES = (1, 6, 12, 18)


class ResidualSEUnit(nn.Sequential):
    """Pre-activation residual unit followed by a squeeze-excitation gate (reduction 8)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, first: bool = False) -> None:
        super().__init__(
            PreActResidualUnit(in_channels, out_channels, stride, first), SqueezeExcite(out_channels, 8)
        )


class ResUNetPlusPlus(PaddedSegmentationNet):
    """ResUNet++: residual+SE encoder, ASPP bridge, attention-gated decoder and an ASPP before the head.

    Level widths are ``base * (1, 2, 4, 8)``: a full-resolution stem, three stride-2 residual+SE
    units, an ASPP bridge (rates 1/6/12/18) at ``8 * base``, then three decoder stages. Each decoder
    stage gates the encoder skip with an attention gate (embedding width ``4 * base``) driven by the
    coarser decoder feature, upsamples the decoder feature (nearest, 2x), concatenates both and
    applies a residual unit. Inputs are padded internally to a multiple of 8, so any H, W works.

    Args:
        in_channels: Input image channels.
        num_classes: Output logit channels.
        base_channel: Width of the stem (32 gives the published 3.93M parameters).
    """

    size_divisor = 8

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base_channel: int = 32) -> None:
        super().__init__()
        w = [base_channel * 2**i for i in range(4)]
        self.encoder = nn.ModuleList(
            [
                ResidualSEUnit(in_channels, w[0], first=True),
                ResidualSEUnit(w[0], w[1], stride=2),
                ResidualSEUnit(w[1], w[2], stride=2),
                ResidualSEUnit(w[2], w[3], stride=2),
            ]
        )
        self.bridge = ASPP(w[3], w[3], ASPP_RATES)
        # decoder stage for level i gates skip w[i] with the coarser decoder feature w[i + 1]; all
        # gates embed into the same width (4 * base), as in the published 3.93M configuration
        self.gates = nn.ModuleList(AttentionGate(w[i], w[i + 1], w[2]) for i in reversed(range(3)))
        self.decoder = nn.ModuleList(PreActResidualUnit(w[i + 1] + w[i], w[i]) for i in reversed(range(3)))
        self.out_aspp = ASPP(w[0], w[0], ASPP_RATES)
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Network body on an input whose H, W are multiples of 8."""
        skips = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        x = self.bridge(skips.pop())
        for gate, unit in zip(self.gates, self.decoder, strict=True):
            skip = skips.pop()
            up = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = unit(torch.cat([up, gate(skip, x)], dim=1))
        return self.head(self.out_aspp(x))


@register_model("resunetpp")
def resunetpp(in_channels: int = 3, num_classes: int = 2, base_channel: int = 32) -> ResUNetPlusPlus:
    """Build :class:`ResUNetPlusPlus` (registry name ``resunetpp``)."""
    return ResUNetPlusPlus(in_channels, num_classes, base_channel)
