"""Feature encoder of SSL-ALPNet: a DeepLabV3 ResNet backbone (ASPP dropped), 1x1 conv to 256, stride 8."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from core.checkpoint_io import read_state_dict


def _resnet_backbone(name: str, weights_path: str | None) -> tuple[nn.Module, int]:
    from torchvision.models import segmentation

    # weights=None / weights_backbone=None: never download; COCO weights come from a local file only.
    factory = {"resnet101": segmentation.deeplabv3_resnet101, "resnet50": segmentation.deeplabv3_resnet50}[
        name
    ]
    model = factory(weights=None, weights_backbone=None, aux_loss=False)
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"FewShotEncoder: pretrained weights {path} do not exist")
        state = read_state_dict(path)
        backbone = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
        if not backbone:
            raise ValueError(
                f"FewShotEncoder: {path} holds no 'backbone.*' keys of a torchvision DeepLabV3 {name}"
            )
        model.backbone.load_state_dict(backbone, strict=True)
    return model.backbone, 2048


def _resnet18_backbone(weights_path: str | None) -> tuple[nn.Module, int]:
    # CPU option (not the paper's): ResNet-18 up to layer3, layer3's stride set to 1 so the output
    # stride is 8 like the dilated DeepLabV3 backbones, at a fraction of their cost.
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"FewShotEncoder: pretrained weights {path} do not exist")
        state = read_state_dict(path)
        keep = {k: v for k, v in state.items() if not k.startswith(("layer4.", "fc."))}
        net.load_state_dict({**net.state_dict(), **keep}, strict=True)
    net.layer3[0].conv1.stride = (1, 1)
    net.layer3[0].downsample[0].stride = (1, 1)
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    return body, 256


def _tiny_backbone() -> tuple[nn.Module, int]:
    # Test/debug option: three stride-2 conv blocks (stride 8 like the real encoder), seconds on CPU.
    layers, ch = [], 3
    for out in (16, 32, 64):
        layers += [
            nn.Conv2d(ch, out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
        ]
        ch = out
    return nn.Sequential(*layers), 64


BACKBONES = ("resnet101", "resnet50", "resnet18", "tiny")


class FewShotEncoder(nn.Module):
    """Image -> ``feature_dim`` features at 1/8 resolution.

    Args:
        backbone: ``resnet101`` (paper), ``resnet50``, ``resnet18`` (layer3 at stride 8, a CPU option)
            or ``tiny`` (a 3-layer conv stack for tests and debugging).
        weights_path: Local weights: a torchvision DeepLabV3 (COCO) state dict whose ``backbone.*`` keys
            are loaded (resnet101/50), or a torchvision ResNet-18 state dict (resnet18).
        feature_dim: Channels after the 1x1 projection (256).

    Shape:
        ``[B, 3, H, W]`` -> ``[B, feature_dim, ceil(H/8), ceil(W/8)]``.
    """

    def __init__(
        self, backbone: str = "resnet101", weights_path: str | None = None, feature_dim: int = 256
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"FewShotEncoder: unknown backbone {backbone!r}; expected one of {BACKBONES}")
        if backbone == "tiny":
            if weights_path is not None:
                raise ValueError("FewShotEncoder: backbone 'tiny' has no pretrained weights")
            self.body, channels = _tiny_backbone()
        elif backbone == "resnet18":
            self.body, channels = _resnet18_backbone(weights_path)
        else:
            self.body, channels = _resnet_backbone(backbone, weights_path)
        self.project = nn.Conv2d(channels, feature_dim, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Features of a batch of images."""
        out = self.body(x)
        return self.project(out["out"] if isinstance(out, dict) else out)
