"""``ALPNetModule``: self-supervised few-shot segmentation (SSL-ALPNet) as a LightningModule."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datasets.image_io import write_png_atomic
from models.fewshot.alp import alp_logits
from models.fewshot.network import FewShotEncoder
from models.optim import OptimConfig
from models.overlays import overlay
from models.task import Monitor, TaskModule, local_log_dir


def episode_logits(
    encoder: torch.nn.Module,
    support: Tensor,
    support_mask: Tensor,
    query: Tensor,
    window: int,
    threshold: float,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Query logits of a batch of 1-shot episodes at image resolution, plus both feature maps.

    Shape:
        support, query ``[B, 3, H, W]``, support_mask ``[B, H, W]`` -> logits ``[B, 2, H, W]``,
        support and query features ``[B, C, h, w]``.
    """
    feats = encoder(torch.cat([support, query]))
    s_fts, q_fts = feats[: support.shape[0]], feats[support.shape[0] :]
    logits = torch.cat(
        [
            alp_logits(s_fts[b], support_mask[b], q_fts[b : b + 1], window, threshold, scale)
            for b in range(support.shape[0])
        ]
    )
    return F.interpolate(logits, size=query.shape[-2:], mode="bilinear", align_corners=False), s_fts, q_fts


def alignment_loss(
    s_fts: Tensor,
    q_fts: Tensor,
    q_logits: Tensor,
    support_mask: Tensor,
    window: int,
    threshold: float,
    scale: float,
) -> Tensor:
    """PANet alignment: the query's predicted mask becomes the support mask to segment the support.

    Episodes whose prediction has no foreground (or no background) are skipped explicitly (no
    prototype exists); the loss is the mean over the others, 0 when none is left.
    """
    pred = q_logits.argmax(dim=1).detach()
    losses = []
    for b in range(pred.shape[0]):
        fg = pred[b]
        if not fg.any() or fg.all():
            continue
        logits = alp_logits(q_fts[b], fg, s_fts[b : b + 1], window, threshold, scale)
        logits = F.interpolate(logits, size=support_mask.shape[-2:], mode="bilinear", align_corners=False)
        losses.append(F.cross_entropy(logits, support_mask[b : b + 1]))
    return torch.stack(losses).mean() if losses else q_logits.sum() * 0.0


def _to_uint8(image: Tensor) -> np.ndarray:
    grey = image[0].detach().float().cpu().numpy()
    lo, hi = float(grey.min()), float(grey.max())
    grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
    return np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=2)


# SSL-ALPNet's optimisation: SGD 1e-3 (momentum 0.9, no Nesterov), weight decay 5e-4, lr x 0.95
# every 1000 iterations.
ALPNET_OPTIM = OptimConfig(
    name="sgd",
    lr=1e-3,
    momentum=0.9,
    nesterov=False,
    weight_decay=5e-4,
    scheduler="step",
    interval="step",
    step_size=1000,
    gamma=0.95,
)


class ALPNetModule(TaskModule):
    """SSL-ALPNet: ALP prototypes on DeepLabV3 features, trained on superpixel episodes.

    Checkpointing monitors ``train/iterations`` (max): self-supervised training has no labelled
    validation set, so the final weights are the ones tested, as in the paper.

    Args:
        backbone: ``resnet101`` (paper), ``resnet50`` or ``tiny`` (tests/debugging only).
        weights_path: Local torchvision DeepLabV3 COCO state dict (never downloaded).
        feature_dim: Encoder output channels (256).
        num_classes: 2 (background, foreground of an episode); linked from the data.
        in_channels: 3 (grey tiled); linked from the data.
        optim: Optimizer and schedule (the paper's SGD with a step decay per iteration by default).
        bg_weight: Cross-entropy weight of the background (foreground 1.0).
        align_weight: Weight of the alignment loss.
        train_window: ALP pooling window in training.
        test_window: ALP pooling window at test.
        threshold: Minimum class fraction of a cell for a local prototype.
        scale: Cosine temperature.
        max_overlays: Overlay PNGs written at test (middle query slice per organ and scan).
    """

    monitor: ClassVar[Monitor] = Monitor("train/iterations", "max")
    segments_from_support: ClassVar[bool] = True
    default_optim: ClassVar[OptimConfig] = ALPNET_OPTIM

    def __init__(
        self,
        backbone: str = "resnet101",
        weights_path: str | None = None,
        feature_dim: int = 256,
        num_classes: int = 2,
        in_channels: int = 3,
        optim: OptimConfig = ALPNET_OPTIM,
        bg_weight: float = 0.05,
        align_weight: float = 1.0,
        train_window: int = 4,
        test_window: int = 2,
        threshold: float = 0.95,
        scale: float = 20.0,
        max_overlays: int = 32,
    ) -> None:
        super().__init__(optim)
        if num_classes != 2 or in_channels != 3:
            raise ValueError(
                f"ALPNetModule: episodes are binary on 3-channel images; got num_classes={num_classes}, "
                f"in_channels={in_channels} (expected 2 and 3)"
            )
        self.save_task_hyperparameters()
        self.encoder = FewShotEncoder(backbone, weights_path, feature_dim)
        self.register_buffer("ce_weight", torch.tensor([bg_weight, 1.0]), persistent=False)
        self._overlays = 0

    def forward(self, support: Tensor, support_mask: Tensor, query: Tensor) -> Tensor:
        """Query logits with the test window. Shape: ``[B,3,H,W], [B,H,W], [B,3,H,W] -> [B,2,H,W]``."""
        h = self.hparams
        return episode_logits(
            self.encoder, support, support_mask, query, h.test_window, h.threshold, h.scale
        )[0]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Weighted CE on the query + alignment loss on the support."""
        h = self.hparams
        logits, s_fts, q_fts = episode_logits(
            self.encoder,
            batch["support_image"],
            batch["support_mask"],
            batch["query_image"],
            h.train_window,
            h.threshold,
            h.scale,
        )
        ce = F.cross_entropy(logits, batch["query_mask"], weight=self.ce_weight)
        align = alignment_loss(
            s_fts, q_fts, logits, batch["support_mask"], h.train_window, h.threshold, h.scale
        )
        loss = ce + h.align_weight * align
        bs = logits.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/query_loss", ce, batch_size=bs)
        self.log("train/align_loss", align, batch_size=bs)
        self.log("train/iterations", float(self.global_step + 1), batch_size=bs)
        return loss

    def on_test_epoch_start(self) -> None:
        """Reset the per-slice rows and the overlay count."""
        super().on_test_epoch_start()
        self._overlays = 0

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Segment one query slice; keep intersection/prediction counts for the 3D Dice."""
        logits = self(batch["support_image"], batch["support_mask"], batch["query_image"])
        pred = logits.argmax(dim=1)
        gt = batch["query_mask"]
        for b in range(pred.shape[0]):
            scan, organ, z = batch["query_scan"][b], batch["organ"][b], int(batch["query_z"][b])
            self.add_test_rows([{
                "id": f"{scan}/{organ}/{z:04d}", "scan": scan, "organ": organ, "z": z,
                "support_z": int(batch["support_z"][b]), "inter": int((pred[b].bool() & gt[b].bool()).sum()),
                "pred": int(pred[b].sum()), "gt_total": int(batch["gt_total"][b]),
            }])  # fmt: skip
            if bool(batch["overlay"][b]) and self._overlays < self.hparams.max_overlays:
                self._save_overlay(batch, pred, b, f"{scan}_{organ}_z{z:03d}.png")

    def _save_overlay(self, batch: dict[str, Any], pred: Tensor, b: int, name: str) -> None:
        run_dir = local_log_dir(self.trainer)
        if run_dir is None:
            return
        out = Path(run_dir) / "overlays"
        sup, qry = _to_uint8(batch["support_image"][b]), _to_uint8(batch["query_image"][b])
        panels = [
            overlay(sup, batch["support_mask"][b].cpu().numpy()),
            overlay(qry, batch["query_mask"][b].cpu().numpy()),
            overlay(qry, pred[b].cpu().numpy()),
        ]
        panel = np.concatenate(panels, axis=1)
        write_png_atomic(out / name, panel)
        self._overlays += 1

    def summarise_test(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """3D Dice per organ per query scan (``per_scan``) and its means per organ (``mean``)."""
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in rows:
            t = totals[(r["scan"], r["organ"])]
            t[0] += r["inter"]
            t[1] += r["pred"]
            t[2] = r["gt_total"]
        table = [
            {"scan": s, "organ": o, "dice": 2 * i / (p + g) if p + g else math.nan}
            for (s, o), (i, p, g) in sorted(totals.items())
        ]
        organs = list(dict.fromkeys(r["organ"] for r in table))
        mean = {f"dice_{o}": float(np.nanmean([r["dice"] for r in table if r["organ"] == o])) for o in organs}
        mean["dice_mean"] = float(np.mean(list(mean.values()))) if mean else math.nan
        return {"mean": mean, "per_scan": table, "num_slices": len(rows)}

    def on_test_epoch_end(self) -> None:
        """Summarise (see :meth:`summarise_test`) and print the table on rank 0."""
        super().on_test_epoch_end()
        if self.trainer.is_global_zero:
            print(format_table(self.test_summary["per_scan"], self.test_summary["mean"]))


def format_table(table: list[dict[str, Any]], mean: dict[str, float]) -> str:
    """Plain-text 1-shot Dice table: one line per (scan, organ), then the means."""
    lines = ["1-shot Dice (3D, per query scan)", f"{'scan':<16}{'organ':<16}{'dice':>8}"]
    lines += [f"{r['scan']:<16}{r['organ']:<16}{r['dice']:>8.4f}" for r in table]
    lines += [f"{'mean':<16}{k[5:]:<16}{v:>8.4f}" for k, v in mean.items()]
    return "\n".join(lines)
