"""Supervised segmentation LightningModule: any registered network, any registered loss, optional KD."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.volume_cases import is_volume_batch
from models.inference.patch_eval import data_eval_window, eval_logits
from models.losses import apply_loss, create_loss
from models.losses.distillation import DistillationLoss
from models.metric_collection import SegmentationMetrics
from models.metrics import per_image_metrics
from models.networks.registry import create_model
from models.optim import OptimConfig
from models.task import Monitor, TaskModule
from models.transfer import load_pretrained, load_teacher
from models.volume_eval import volume_test_rows

# The supervised family's optimisation defaults (configs usually state their own).
SUPERVISED_OPTIM = OptimConfig(name="adam", lr=1e-3, scheduler="cosine")


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


class SegmentationModule(TaskModule):
    """Supervised segmentation with the UNet family, hybrid losses and knowledge distillation.

    Args:
        model: Registered network name (see ``models.list_models()``).
        model_kwargs: Architecture options, e.g. ``{"base_channel": 32}`` or ``{"encoder_name": "resnet18"}``.
        num_classes: Output classes, background included (linked from the data section).
        in_channels: Input channels (linked from the data section).
        loss: Registered loss name (``ce``, ``dice``, ``hybrid``, ``ohem_ce``, ...).
        loss_kwargs: Options of the loss, e.g. ``{"losses": {"ce": 1.0, "dice": 1.5}}`` for ``hybrid``.
        optim: Optimizer and schedule (default Adam 1e-3, cosine per epoch).
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
        optim: OptimConfig = SUPERVISED_OPTIM,
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
        super().__init__(optim)
        self.save_task_hyperparameters()
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

    monitor: ClassVar[Monitor] = Monitor("val/dice", "max")
    default_optim: ClassVar[OptimConfig] = SUPERVISED_OPTIM
    predicts_segmentation: ClassVar[bool] = True

    def forward(self, image: Tensor) -> Tensor:
        """Logits of the main head (eval-mode semantics).

        Shape:
            image ``[B, in_channels, H, W]`` -> ``[B, num_classes, H, W]``.
        """
        out = self.net(image)
        return out[0] if isinstance(out, (list, tuple)) else out

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[Tensor, Tensor]:
        if stage == "train" or data_eval_window(self) is None:
            out = self.net(batch["image"])
        else:  # data.sampling: patch: whole native-resolution images by sliding windows
            out = eval_logits(self, batch["image"], self.num_classes)
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
        log_validation_metrics(self, self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-image metrics at each image's ORIGINAL resolution (logits are resized, not the masks).

        With ``data.sampling: patch`` the logits come from sliding windows over the whole image; a whole
        volume case (volume layouts) is predicted slice by slice and scored in 3D (mm).
        """
        if is_volume_batch(batch):
            hp = self.hparams
            self.add_test_rows(
                volume_test_rows(self, batch, self.num_classes, hp.include_background, hp.hd95_in_test)
            )
            return
        self.add_test_rows(
            test_rows(
                eval_logits(self, batch["image"], self.num_classes),
                batch,
                max(self.num_classes, 2),
                self.hparams.include_background,
                self.hparams.hd95_in_test,
            )
        )


def log_validation_metrics(module: TaskModule, metrics: SegmentationMetrics) -> None:
    """Log a metric collection's epoch values as ``val/<name>`` (``val/dice`` on the bar), reset it."""
    values = metrics.compute()
    module.log("val/dice", values.pop("dice"), prog_bar=True)
    module.log_dict({f"val/{k}": v for k, v in values.items()})
    metrics.reset()


def test_rows(
    logits: Tensor, batch: dict[str, Any], num_classes: int, include_background: bool, with_hd95: bool
) -> list[dict[str, Any]]:
    """Per-image metric rows of a test batch, at each image's original size.

    Args:
        logits: ``[B, C, h, w]`` at the network's input size.
        batch: ``orig_mask`` (list of ``[H, W]``) and ``id`` per image.
        num_classes: Classes of the metrics (>= 2).
        include_background: Count the background class.
        with_hd95: Compute HD95 (pixels).

    Returns:
        One row per image: ``id``, ``height``, ``width`` and the metrics.
    """
    rows = []
    for i, (orig_mask, image_id) in enumerate(zip(batch["orig_mask"], batch["id"], strict=True)):
        size = tuple(int(s) for s in orig_mask.shape[-2:])
        resized = F.interpolate(logits[i : i + 1].float(), size=size, mode="bilinear", align_corners=False)
        pred = logits_to_labels(resized)[0]
        row = per_image_metrics(pred.cpu(), orig_mask.cpu(), num_classes, include_background, with_hd95)
        rows.append({"id": image_id, "height": size[0], "width": size[1], **row})
    return rows
