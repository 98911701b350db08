"""Supervised segmentation LightningModule: any registered network, any registered loss, optional KD."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from models.checkpoints import load_pretrained, load_teacher
from models.losses import apply_loss, create_loss
from models.losses.distillation import DistillationLoss
from models.metric_collection import SegmentationMetrics
from models.metrics import per_image_metrics
from models.optim import build_optimizer, build_scheduler
from models.registry import create_model
from models.test_results import gather_rows, local_log_dir, summarise_rows, write_test_results


def logits_to_labels(logits: Tensor) -> Tensor:
    """Turn logits into class-index predictions.

    Args:
        logits: ``[B, C, H, W]``; ``C == 1`` means binary with a sigmoid.

    Returns:
        Long tensor ``[B, H, W]``.
    """
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


class SegmentationModule(L.LightningModule):
    """Supervised segmentation with the UNet family, hybrid losses and knowledge distillation.

    Args:
        model: Registered network name (see ``models.list_models()``).
        model_kwargs: Architecture options, e.g. ``{"base_channel": 32}`` or ``{"encoder_name": "resnet18"}``.
        num_classes: Output classes, background included (linked from the data section).
        in_channels: Input channels (linked from the data section).
        loss: Registered loss name (``ce``, ``dice``, ``hybrid``, ``ohem_ce``, ...).
        loss_kwargs: Options of the loss, e.g. ``{"losses": {"ce": 1.0, "dice": 1.5}}`` for ``hybrid``.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: Base learning rate.
        weight_decay: Weight decay.
        momentum: SGD momentum.
        scheduler: Epoch-wise schedule: ``cosine``, ``poly``, ``step`` or ``none``.
        warmup_epochs: Linear warm-up epochs before the schedule.
        min_lr_factor: Floor of the schedule as a fraction of ``lr``.
        include_background: Count the background class in Dice/IoU (off by default: it inflates scores).
        hd95_in_test: Compute HD95 per test image (costs a distance transform per image and class).
        pretrained: Checkpoint or state dict whose weights initialise the network (missing file: error).
        pretrained_parts: Parts loaded from ``pretrained``: ``encoder``, ``encoder+decoder`` or ``all``.
        pretrained_source: For two-branch (BYOL) checkpoints: the ``target`` (momentum) or ``online`` encoder.
        teacher_checkpoint: Lightning checkpoint (or state dict + ``teacher_model``) of a KD teacher.
        teacher_model: Network name of the teacher when ``teacher_checkpoint`` is a plain state dict.
        teacher_model_kwargs: Architecture options of the teacher for a plain state dict.
        kd_mode: ``kl`` (temperature-scaled, T^2, batchmean) or ``mse`` on logits.
        kd_temperature: Distillation temperature.
        kd_coef: Weight of the distillation term added to the task loss.
    """

    def __init__(
        self,
        model: str = "unet",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 3,
        loss: str = "ce",
        loss_kwargs: dict[str, Any] | None = None,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: Literal["cosine", "poly", "step", "none"] = "cosine",
        warmup_epochs: int = 0,
        min_lr_factor: float = 0.0,
        include_background: bool = False,
        hd95_in_test: bool = True,
        pretrained: str | None = None,
        pretrained_parts: Literal["encoder", "encoder+decoder", "all"] = "encoder",
        pretrained_source: Literal["target", "online"] = "target",
        teacher_checkpoint: str | None = None,
        teacher_model: str | None = None,
        teacher_model_kwargs: dict[str, Any] | None = None,
        kd_mode: Literal["kl", "mse"] = "kl",
        kd_temperature: float = 4.0,
        kd_coef: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.net = create_model(
            model, in_channels=in_channels, num_classes=num_classes, **(model_kwargs or {})
        )
        if pretrained is not None:
            load_pretrained(self.net, pretrained, parts=pretrained_parts, source=pretrained_source)
        self.loss_fn = create_loss(loss, **(loss_kwargs or {}))
        self.teacher = None
        if teacher_checkpoint is not None:
            self.teacher = load_teacher(
                teacher_checkpoint, in_channels, num_classes, teacher_model, teacher_model_kwargs
            )
            self.kd_loss = DistillationLoss(mode=kd_mode, temperature=kd_temperature)
        metric_classes = max(num_classes, 2)
        self.val_metrics = SegmentationMetrics(
            num_classes=metric_classes, include_background=include_background
        )
        self._test_rows: list[dict[str, Any]] = []

    def forward(self, image: Tensor) -> Tensor:
        """Logits of the main head (eval-mode semantics).

        Shape:
            image ``[B, in_channels, H, W]`` -> ``[B, num_classes, H, W]``.
        """
        out = self.net(image)
        return out[0] if isinstance(out, (list, tuple)) else out

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, Tensor]:
        out = self.net(batch["image"])
        loss = apply_loss(self.loss_fn, out, batch["mask"])
        logits = out[0] if isinstance(out, (list, tuple)) else out
        if self.teacher is not None and stage == "train":
            with torch.no_grad():
                teacher_logits = self.teacher(batch["image"])
            kd = self.kd_loss(logits, teacher_logits)
            self.log("train/kd_loss", kd, on_step=False, on_epoch=True, batch_size=logits.shape[0])
            loss = loss + self.hparams.kd_coef * kd
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=stage != "train",
            batch_size=logits.shape[0],
        )
        return loss, logits

    def on_train_epoch_start(self) -> None:
        """Tell the data the epoch (augmentation seeds), also when DDP replaced the sampler or on resume."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step on a batch (``image``, ``mask``)."""
        loss, _ = self._step(batch, "train")
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Loss and metric update on a validation batch; returns predictions for the overlay callback."""
        loss, logits = self._step(batch, "val")
        preds = logits_to_labels(logits)
        self.val_metrics.update(preds, batch["mask"])
        return {"loss": loss, "preds": preds}

    def on_validation_epoch_end(self) -> None:
        """Log DDP-synchronised validation metrics (``val/dice`` is the checkpoint monitor)."""
        values = self.val_metrics.compute()
        self.log("val/dice", values.pop("dice"), prog_bar=True)
        self.log_dict({f"val/{k}": v for k, v in values.items()})
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-image metrics at each image's ORIGINAL resolution (logits are resized, not the masks)."""
        logits = self(batch["image"])
        for i, (orig_mask, image_id) in enumerate(zip(batch["orig_mask"], batch["id"], strict=True)):
            size = tuple(int(s) for s in orig_mask.shape[-2:])
            resized = F.interpolate(
                logits[i : i + 1].float(), size=size, mode="bilinear", align_corners=False
            )
            pred = logits_to_labels(resized)[0]
            row = per_image_metrics(
                pred.cpu(),
                orig_mask.cpu(),
                max(self.num_classes, 2),
                include_background=self.hparams.include_background,
                with_hd95=self.hparams.hd95_in_test,
            )
            self._test_rows.append({"id": image_id, "height": size[0], "width": size[1], **row})

    def on_test_epoch_start(self) -> None:
        """Start a fresh list of per-image rows."""
        self._test_rows = []

    def on_test_epoch_end(self) -> None:
        """Gather per-image rows from all ranks, write CSV + JSON, and log the summary."""
        rows = gather_rows(self._test_rows)
        summary = summarise_rows(rows)
        log_dir = local_log_dir(self.trainer)
        if self.trainer.is_global_zero and log_dir is not None:
            write_test_results(rows, summary, log_dir)
        for key, value in summary["mean"].items():
            self.log(f"test/{key}", value, rank_zero_only=True)
        self.test_summary = summary

    def configure_optimizers(self) -> dict[str, Any]:
        """Optimizer + epoch-wise schedule from the hyper-parameters."""
        hp = self.hparams
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, hp.optimizer, hp.lr, hp.weight_decay, hp.momentum)
        scheduler = build_scheduler(
            optimizer, hp.scheduler, self.trainer.max_epochs, hp.warmup_epochs, hp.min_lr_factor
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
