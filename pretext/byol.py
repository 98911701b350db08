"""BYOL pretraining of a segmentation encoder (SSL-MedSeg): online + EMA target networks, two views.

Checkpoint layout: ``online_net.encoder.*``, ``online_net.projector.*``, ``predictor.*`` and
``target_net.encoder.*``; :func:`models.transfer.load_pretrained` transfers the target (momentum)
encoder by default into a downstream ``encoder_unet``.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from core.settings import check_exclusive
from models.networks.registry import create_model
from models.optim import OptimConfig
from models.task import TaskModule
from models.transfer import load_pretrained
from pretext.byol_ops import (
    DEFAULT_AUGMENT,
    ViewAugmentation,
    augment_view,
    ema_update,
    symmetric_byol_loss,
    tau_schedule,
)
from pretext.ops import pretext_predict_message

# Random-stream tags keep training and validation views independent of each other.
_TRAIN_STREAM, _VAL_STREAM = 0, 1


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector/predictor head: Linear -> BatchNorm -> ReLU -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class EncoderProjector(nn.Module):
    """An smp encoder whose deepest feature map is average-pooled and projected.

    Args:
        encoder: smp encoder returning a list of feature maps (deepest last).
        projector: Head applied to the pooled deepest feature.
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: Tensor) -> Tensor:
        """Projection of a batch.

        Shape:
            ``[B, C, H, W]`` -> ``[B, out_dim]``.
        """
        return self.projector(self.encoder(x)[-1].mean(dim=(2, 3)))


def view_generator(seed: int, stream: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, stream, step, rank)`` (reproducible, resumable)."""
    state = int(np.random.SeedSequence([seed, stream, step, rank]).generate_state(1)[0])
    return torch.Generator().manual_seed(state)


# SSL-MedSeg's CPU-friendly default: Adam 1e-3, weight decay 1e-5, cosine per epoch (``name: lars``
# for the paper's large-batch LARS).
BYOL_OPTIM = OptimConfig(name="adam", lr=1e-3, weight_decay=1e-5, scheduler="cosine")


class BYOL(TaskModule):
    """Bootstrap Your Own Latent on the encoder of ``encoder_unet``.

    Args:
        encoder_name: smp encoder (``resnet50`` in SSL-MedSeg, ``resnet18`` for quick runs).
        in_channels: Image channels (linked from the data section).
        num_classes: Unused (linked from the data section); kept so any data config plugs in.
        proj_hidden_dim: Projector hidden width.
        proj_output_dim: Projection (and prediction) width.
        pred_hidden_dim: Predictor hidden width (SSL-MedSeg: 8192).
        base_tau: EMA momentum at step 0.
        final_tau: EMA momentum at the last step (cosine schedule over all training steps).
        optim: Optimizer and schedule; ``name: lars`` is SGD + layer-wise trust ratio with biases and
            norm layers excluded from decay and scaling.
        encoder_weights: Local ImageNet-like state dict of the encoder (e.g. torchvision/timm ResNet).
        init_checkpoint: Any earlier checkpoint (BYOL: target encoder; MIM; supervised) to start from:
            hierarchical pretraining.
        crop_size: Side of the views; None keeps the input size.
        augment: Crop, flip and colour-jitter settings of the views (:class:`ViewAugmentation`).
        aug_seed: Seed of the view augmentation (views depend on ``(aug_seed, step)`` only).

    Raises:
        ValueError: If both ``encoder_weights`` and ``init_checkpoint`` are given (both initialise the
            same encoder).
    """

    has_test: ClassVar[bool] = False
    default_optim: ClassVar[OptimConfig] = BYOL_OPTIM

    def __init__(
        self,
        encoder_name: str = "resnet50",
        in_channels: int = 3,
        num_classes: int = 2,
        proj_hidden_dim: int = 4096,
        proj_output_dim: int = 256,
        pred_hidden_dim: int = 4096,
        base_tau: float = 0.99,
        final_tau: float = 1.0,
        optim: OptimConfig = BYOL_OPTIM,
        encoder_weights: str | None = None,
        init_checkpoint: str | None = None,
        crop_size: int | None = None,
        augment: ViewAugmentation = DEFAULT_AUGMENT,
        aug_seed: int = 0,
    ) -> None:
        super().__init__(optim)
        check_exclusive(encoder_weights=encoder_weights, init_checkpoint=init_checkpoint)
        self.augment = ViewAugmentation.coerce(augment, DEFAULT_AUGMENT)
        self.save_task_hyperparameters()
        self.hparams["augment"] = self.augment.as_dict()
        net = create_model("encoder_unet", in_channels=in_channels, num_classes=1, encoder_name=encoder_name)
        for init in (encoder_weights, init_checkpoint):
            if init is not None:
                load_pretrained(net, init, parts="encoder")  # through net: keys are "encoder.*"
        feat_dim = int(net.encoder.out_channels[-1])
        self.online_net = EncoderProjector(net.encoder, mlp(feat_dim, proj_hidden_dim, proj_output_dim))
        self.predictor = mlp(proj_output_dim, pred_hidden_dim, proj_output_dim)
        self.target_net = copy.deepcopy(self.online_net)
        for p in self.target_net.parameters():
            p.requires_grad_(False)
        self.tau = base_tau

    def views(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Two independently augmented views of a batch (see :func:`pretext.byol_ops.augment_view`)."""
        crop = self.hparams.crop_size
        size = None if crop is None else (crop, crop)
        return tuple(augment_view(images, generator, size, self.augment) for _ in range(2))  # type: ignore[return-value]

    def byol_step(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Symmetric BYOL loss of one batch; the target branch runs without gradient.

        Shape:
            images ``[B, C, H, W]`` (B >= 2: the heads use BatchNorm) -> scalar.
        """
        v1, v2 = self.views(images, generator)
        p1 = self.predictor(self.online_net(v1))
        p2 = self.predictor(self.online_net(v2))
        with torch.no_grad():
            z1, z2 = self.target_net(v1), self.target_net(v2)
        return symmetric_byol_loss(p1, p2, z1, z2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """BYOL loss on two views of the batch's images (masks unused)."""
        gen = view_generator(self.hparams.aug_seed, _TRAIN_STREAM, self.global_step, self.global_rank)
        loss = self.byol_step(batch["image"], gen)
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["image"])
        )
        self.log("train/tau", self.tau, on_step=False, on_epoch=True, batch_size=len(batch["image"]))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """EMA update of the target after each optimisation step, with the cosine tau schedule."""
        max_steps = max(1, int(self.trainer.estimated_stepping_batches))
        ema_update(self.target_net, self.online_net, self.tau)
        self.tau = tau_schedule(self.global_step, max_steps, self.hparams.base_tau, self.hparams.final_tau)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """BYOL loss on fixed views (same every epoch) of a validation batch: the checkpoint monitor."""
        gen = view_generator(self.hparams.aug_seed, _VAL_STREAM, batch_idx, self.global_rank)
        loss = self.byol_step(batch["image"], gen)
        self.log(
            "val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(batch["image"])
        )
        return loss

    def optim_parameters(self) -> list[dict[str, Any]]:
        """Online network + predictor; LARS excludes biases and norm parameters (1-D) from decay."""
        modules = [self.online_net, self.predictor]
        params = [(n, p) for m in modules for n, p in m.named_parameters() if p.requires_grad]
        regular = [p for _, p in params if p.ndim > 1]
        flat = [p for _, p in params if p.ndim <= 1]
        if self.optim.name == "lars":
            return [{"params": regular}, {"params": flat, "exclude": True, "weight_decay": 0.0}]
        return [{"params": regular}, {"params": flat}]

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> Tensor:
        """Not a segmentation model.

        Raises:
            TypeError: Always; BYOL checkpoints initialise segmentation encoders.
        """
        raise TypeError(pretext_predict_message(self))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the current EMA momentum so a resumed run continues the schedule."""
        checkpoint["byol_tau"] = self.tau

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the EMA momentum saved by :meth:`on_save_checkpoint`."""
        self.tau = float(checkpoint.get("byol_tau", self.hparams.base_tau))
