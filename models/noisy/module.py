"""Learning from noisy labels guided by superpixels (Li, Gao & He, MICCAI 2021) and its baselines.

``method``:

* ``plain``: one network, (class-balanced) cross-entropy on the given labels. On clean data this is
  the clean upper bound; on noisy data the plain noisy baseline.
* ``coteaching``: two networks; each selects its small-loss pixels per class and its PEER learns on them.
* ``jocor``: two networks, JoCoR joint loss ``(1-lam)(CE1+CE2) + lam(KL12+KL21)`` per pixel, one joint
  small-loss selection per class.
* ``jocor_sp`` (the paper): as ``jocor`` but on probabilities averaged within superpixels, plus
  superpixel-wise label refinement when the loss gap stalls (on by default).

Selection keeps the fraction ``R_c`` of the smallest-loss pixels of each noisy class ``c``; the forget
rate ``1 - R_c`` ramps from 0 over ``ramp_epochs``. ``keep_rates`` can be given, or read from the
``noisy`` view the data comes from (``keep_rate_source: view``, the precision measured against the clean
masks when the noise was generated: the paper's oracle), or estimated by simulating the recorded noise
process on the clean validation masks (``simulation``; see ``datasets.noise.statistics``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datasets.image_io import write_png_atomic
from datasets.patch_pipeline import stage_pipeline
from datasets.segmentation_dataset import SegmentationDataset
from datasets.transforms import build_transforms
from datasets.volume_cases import is_volume_batch
from models.inference.patch_eval import eval_logits
from models.metric_collection import SegmentationMetrics
from models.networks.registry import create_model
from models.noisy.jocor import class_balance_weights
from models.noisy.keep_rates import keep_rates_from_data
from models.noisy.methods import METHODS, NOISY_METHODS, LossInputs
from models.noisy.refine_round import main_output, peer_probabilities, refined_masks, update_flips
from models.noisy.refinement import LossGapTracker, apply_flips, write_label_set_atomic
from models.noisy.superpixel_ops import keep_rates_at
from models.optim import OptimConfig
from models.segmentation_module import log_validation_metrics, logits_to_labels, test_rows
from models.task import Monitor, TaskModule, local_log_dir
from models.volume_eval import volume_test_rows

__all__ = ["METHODS", "NoisyLabelSegmentation"]


# The paper's optimisation: SGD (Nesterov) 5e-3, momentum 0.99, weight decay 1e-4, constant.
NOISY_OPTIM = OptimConfig(name="sgd", lr=5e-3, weight_decay=1e-4, momentum=0.99, scheduler="none")


class NoisyLabelSegmentation(TaskModule):
    """Two peer networks trained on noisy labels (JoCoR / Co-teaching / superpixel-guided JoCoR).

    Args:
        method: ``plain``, ``coteaching``, ``jocor`` or ``jocor_sp``.
        model: Registered network name of both peers.
        model_kwargs: Architecture options.
        num_classes: Classes including background (>= 2; linked from data).
        in_channels: Input channels (linked from data).
        lam: JoCoR co-regularisation weight.
        keep_rates: ``R_c`` per class (``[R_bg, R_fg]`` for binary); None reads/estimates them.
        keep_rate_source: Where None ``keep_rates`` come from: ``view`` or ``simulation``.
        ramp_epochs: Epochs over which the forget rate ramps up.
        class_balanced: Inverse-frequency class weights on the CE terms.
        refinement: Superpixel label refinement (None: on for ``jocor_sp`` only).
        refine_patience: Epochs without a new maximum loss gap that trigger a round.
        refine_threshold: Mean probability above which a disagreeing superpixel is flipped.
        max_refine_rounds: Rounds at most (the paper's code refined once).
        refined_labels_dir: Where label sets go (default ``<run dir>/refined_labels``).
        eval_net: Network evaluated in validation/test/prediction: ``net1``, ``net2`` (the peer) or
            ``mean`` (averaged probabilities).
        optim: Optimizer and schedule of both peers (one optimizer over both).
        include_background: Count background in Dice/IoU.
        hd95_in_test: HD95 per test image.
        simulation_seed: Seed of the keep-rate simulation.
    """

    monitor: ClassVar[Monitor] = Monitor("val/dice", "max")
    default_optim: ClassVar[OptimConfig] = NOISY_OPTIM
    predicts_segmentation: ClassVar[bool] = True

    def __init__(
        self,
        method: Literal["plain", "coteaching", "jocor", "jocor_sp"] = "jocor_sp",
        model: str = "unet",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 3,
        lam: float = 0.65,
        keep_rates: list[float] | None = None,
        keep_rate_source: Literal["view", "simulation"] = "view",
        ramp_epochs: int = 5,
        class_balanced: bool = True,
        refinement: bool | None = None,
        refine_patience: int = 5,
        refine_threshold: float = 0.8,
        max_refine_rounds: int = 1,
        refined_labels_dir: str | None = None,
        eval_net: Literal["net1", "net2", "mean"] = "net1",
        optim: OptimConfig = NOISY_OPTIM,
        include_background: bool = False,
        hd95_in_test: bool = True,
        simulation_seed: int = 0,
    ) -> None:
        super().__init__(optim)
        NOISY_METHODS.check(method)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (softmax outputs), got {num_classes}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if keep_rates is not None and len(keep_rates) != num_classes:
            raise ValueError(f"keep_rates has {len(keep_rates)} entries, expected num_classes={num_classes}")
        if eval_net in ("net2", "mean") and NOISY_METHODS.get(method).networks < 2:
            raise ValueError(f"eval_net {eval_net!r} needs two networks; method {method!r} trains one")
        self.save_task_hyperparameters()
        self.num_classes = num_classes
        count = NOISY_METHODS.get(method).networks
        self.nets = nn.ModuleList(
            create_model(model, in_channels=in_channels, num_classes=num_classes, **(model_kwargs or {}))
            for _ in range(count)
        )
        self.keep_rates = list(keep_rates) if keep_rates is not None else None
        self.refinement = (method == "jocor_sp") if refinement is None else refinement
        self.tracker = LossGapTracker(refine_patience)
        self.flips: dict[str, Tensor] = {}
        self.refine_rounds = 0
        self.last_flipped = 0
        self.val_metrics = SegmentationMetrics(num_classes=num_classes, include_background=include_background)
        self._gap_sum, self._gap_count = 0.0, 0
        self._resumed_gap: tuple[float, int, int] | None = None  # (sum, count, epoch) from a checkpoint

    # -- evaluation: network 1 or the peers' mean; test rows as the supervised module's -------------
    def forward(self, image: Tensor) -> Tensor:
        """Logits of ``eval_net`` (``mean``: log of the averaged probabilities).

        Shape:
            image ``[B, in_channels, H, W]`` -> ``[B, num_classes, H, W]``.
        """
        if self.hparams.eval_net == "mean":
            return peer_probabilities(self.nets, image).clamp_min(1e-7).log()
        return main_output(self.nets[1 if self.hparams.eval_net == "net2" else 0](image))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-image metrics of the evaluated network at each image's original resolution."""
        classes, hp = max(self.num_classes, 2), self.hparams
        if is_volume_batch(batch):
            self.add_test_rows(
                volume_test_rows(self, batch, self.num_classes, hp.include_background, hp.hd95_in_test)
            )
            return
        logits = eval_logits(self, batch["image"], self.num_classes)
        self.add_test_rows(test_rows(logits, batch, classes, hp.include_background, hp.hd95_in_test))

    def on_validation_epoch_end(self) -> None:
        """Log DDP-synchronised validation metrics (``val/dice`` is the checkpoint monitor)."""
        log_validation_metrics(self, self.val_metrics)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Validation loss and metrics of the evaluated network (against the clean val labels)."""
        logits = eval_logits(self, batch["image"], self.num_classes)
        loss = F.cross_entropy(logits, batch["mask"])
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=logits.shape[0])
        preds = logits_to_labels(logits)
        self.val_metrics.update(preds, batch["mask"])
        return {"loss": loss, "preds": preds}

    # -- training ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Resolve the keep rates before training (from the noisy view or by simulation)."""
        if stage == "fit" and self.hparams.method != "plain" and self.keep_rates is None:
            dm = self.trainer.datamodule if self._trainer is not None else None
            hp = self.hparams
            self.keep_rates = keep_rates_from_data(
                dm, hp.method, hp.keep_rate_source, self.num_classes, hp.simulation_seed
            )

    def refined_labels(self, batch: dict[str, Any]) -> Tensor:
        """The batch's labels with the refinement flips applied (the labels themselves if none)."""
        labels = batch["mask"]
        if not self.flips:
            return labels
        labels = labels.clone()
        for i, key in enumerate(batch["id"]):
            if key in self.flips:
                labels[i] = apply_flips(labels[i], batch["superpixels"][i], self.flips[key])
        return labels

    def compute_loss(self, batch: dict[str, Any], epoch: int) -> tuple[Tensor, Tensor]:
        """Training loss of the method on one batch, and the loss gap (unselected - selected).

        Raises:
            KeyError: If ``jocor_sp`` or refinement gets batches without ``superpixels``.
        """
        method = self.hparams.method
        if (NOISY_METHODS.get(method).needs_superpixels or self.refinement) and "superpixels" not in batch:
            raise KeyError(
                f"method {method!r} (refinement={self.refinement}) needs batch['superpixels']: set "
                "data.superpixels (source cpu or cache)"
            )
        labels = self.refined_labels(batch)
        weights = class_balance_weights(labels, self.num_classes) if self.hparams.class_balanced else None
        rates = keep_rates_at(self.keep_rates or [1.0] * self.num_classes, epoch, self.hparams.ramp_epochs)
        inputs = LossInputs(
            probs=[main_output(net(batch["image"])).softmax(1) for net in self.nets],
            labels=labels,
            weights=weights,
            rates=rates,
            lam=self.hparams.lam,
            superpixels=batch.get("superpixels"),
        )
        return NOISY_METHODS.get(method).loss(inputs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step of both peers."""
        loss, gap = self.compute_loss(batch, self.current_epoch)
        self._gap_sum += float(gap)
        self._gap_count += 1
        size = batch["image"].shape[0]
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def on_train_epoch_start(self) -> None:
        """Reset the epoch's loss-gap accumulator (and tell the data the epoch)."""
        super().on_train_epoch_start()
        # A run resumed mid-epoch continues the interrupted epoch's sums (from its checkpoint), whether
        # or not Lightning runs this hook again for that epoch; any later epoch starts from zero.
        resumed, self._resumed_gap = self._resumed_gap, None
        if resumed is not None and resumed[2] == self.current_epoch:
            self._gap_sum, self._gap_count = resumed[0], resumed[1]
        else:
            self._gap_sum, self._gap_count = 0.0, 0

    def on_train_epoch_end(self) -> None:
        """Log the loss gap; refine labels when it stalled after the ramp (if enabled)."""
        gap = self._gap_sum / max(self._gap_count, 1)
        self.log("train/loss_gap", gap)
        self.log("train/refine_rounds", float(self.refine_rounds))
        if not self.refinement or self.refine_rounds >= self.hparams.max_refine_rounds:
            return
        if self.current_epoch + 1 < self.hparams.ramp_epochs:
            return
        if self.tracker.update(gap):
            self.refine_labels()
            self.tracker.reset()
            self.log("train/refined_superpixels", float(self.last_flipped))

    @torch.no_grad()
    def refine_labels(self) -> Path:
        """Run one refinement round over the training images and save the refined label set.

        Returns:
            The folder of the new label set (``round_XX`` with ``manifest.json``).

        Raises:
            RuntimeError: Without a DataModule serving superpixels.
        """
        dm = self.trainer.datamodule if self._trainer is not None else None
        hook = getattr(dm, "extra_maps", None)
        if dm is None or hook is None or dm.train_dataset is None:
            raise RuntimeError(
                "refinement needs a set-up DataModule whose data.superpixels is source cpu/cache"
            )
        records = list({r.id: r for r in dm.train_dataset.records}.values())
        spatial = None
        if getattr(dm, "patching", None) is None:
            transform = build_transforms(dm.train_transforms, dm.image_size, "val")
        else:  # patch-trained nets see whole images at native resolution (fully convolutional)
            transform, spatial = stage_pipeline(dm.patching, dm.train_transforms, "val")
        dataset = SegmentationDataset(
            records, dm.num_classes, dm.in_channels, transform, "val", dm.seed, hook, spatial
        )
        stats = update_flips(self.nets, dataset, self.flips, self.hparams.refine_threshold, self.device)
        self.refine_rounds += 1
        masks = refined_masks(records, self.flips, hook, dm.num_classes, dm.in_channels, stats)
        base = self.hparams.refined_labels_dir or str(
            Path(local_log_dir(self.trainer) or ".") / "refined_labels"
        )
        manifest = {
            "round": self.refine_rounds,
            "epoch": self.current_epoch,
            "threshold": self.hparams.refine_threshold,
            "method": self.hparams.method,
            "images": stats,
            "source_masks": {r.id: str(r.mask) for r in records},
        }
        out = write_label_set_atomic(
            Path(base) / f"round_{self.refine_rounds:02d}", masks, manifest, self._write_mask
        )
        self.last_flipped = sum(s["flipped_superpixels"] for s in stats.values())
        return out

    def _write_mask(self, path: Path, labels: np.ndarray) -> None:
        array = (labels > 0).astype(np.uint8) * 255 if self.num_classes == 2 else labels.astype(np.uint8)
        write_png_atomic(path, array)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the refinement state (flip tables, tracker) and the resolved keep rates."""
        checkpoint["noisy_label_state"] = {
            "flips": {k: v.tolist() for k, v in self.flips.items()},
            "tracker": self.tracker.state_dict(),
            "rounds": self.refine_rounds,
            "keep_rates": self.keep_rates,
            "epoch_gap": [self._gap_sum, self._gap_count, self.current_epoch],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore :meth:`on_save_checkpoint`'s state."""
        state = checkpoint.get("noisy_label_state")
        if state is None:
            return
        self.flips = {k: torch.tensor(v, dtype=torch.long) for k, v in state["flips"].items()}
        self.tracker.load_state_dict(state["tracker"])
        self.refine_rounds = int(state["rounds"])
        self.keep_rates = state["keep_rates"]
        if "epoch_gap" in state:
            gap_sum, gap_count, epoch = state["epoch_gap"]
            self._resumed_gap = (float(gap_sum), int(gap_count), int(epoch))
            self._gap_sum, self._gap_count = self._resumed_gap[:2]
