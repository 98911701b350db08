"""The proxy objective of a (k, n) policy as a test-only LightningModule (autoSMIM's search trial).

``python run.py --cfg configs/config_search.yaml --aug_k K --aug_n N`` evaluates frozen inpainting and
jigsaw models on the test loader (the validation split: ``data.test_split: val``) with every image
masked by ``n`` of its superpixels (maps from ``data.superpixels`` with ``n_segments = k``), and
puts ``NormLoss(jigsaw) - NormLoss(inpainting)`` into ``test_summary["mean"]["objective"]``.
Runs on one device (per-batch losses are not gathered across DDP ranks).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np

from models.task import Monitor, TaskModule
from policy_search.objectives import (
    PENALTY,
    Penalty,
    half_k_penalty,
    norm_loss,
    penalised_value,
    proxy_objective,
    real_count_penalty,
)
from policy_search.proxy_ops import evaluate_batch, load_frozen, nni_active, superpixel_counts

log = logging.getLogger(__name__)


class PolicyProxyObjective(TaskModule):
    """Test-only module: the proxy objective of one (k, n) policy on the test loader.

    ``k`` comes from ``data.init_args.superpixels.params.n_segments`` (``--aug_k``), ``n`` from
    ``n_masked`` (``--aug_n``). ``test_summary["mean"]`` holds ``objective``, ``norm_loss_jigsaw``,
    ``norm_loss_inpainting``, ``raw_jigsaw``, ``raw_inpainting`` (mean per-batch losses),
    ``masked_fraction`` and ``penalised`` (0/1); a penalised policy reports ``penalty`` as the
    objective and its reason in ``test_summary["penalty_reason"]`` and the log.

    Args:
        inpainting_checkpoint: Checkpoint of the MIM model (step 1 of autoSMIM).
        jigsaw_checkpoint: Checkpoint of the jigsaw probe trained on that MIM encoder.
        in_channels: Image channels (linked from the data section; must match the checkpoints).
        n_masked: Superpixels masked per image (autoSMIM's ``n``).
        fill: Fill of hidden pixels (``zero`` = black, the paper).
        seed: Seed of masks and tile permutations (the same seed gives the same objective).
        penalty: Objective reported for a penalised policy (autoSMIM: 10).
        penalise_half_k: Apply autoSMIM's ``n > k/2`` rule (``n >= real count`` always applies).
        report_to_nni: Report the running objective per batch as NNI intermediate results; None = only
            inside an NNI trial.
        inpainting_class: Class of the inpainting checkpoint.
        jigsaw_class: Class of the jigsaw checkpoint.
    """

    needs_fit: ClassVar[bool] = False
    monitor: ClassVar[Monitor] = Monitor("test/objective", "min")

    def __init__(
        self,
        inpainting_checkpoint: str,
        jigsaw_checkpoint: str,
        in_channels: int = 3,
        n_masked: int = 128,
        fill: Literal["zero", "mean"] = "zero",
        seed: int = 42,
        penalty: float = PENALTY,
        penalise_half_k: bool = True,
        report_to_nni: bool | None = None,
        inpainting_class: str = "pretext.inpainting.SuperpixelInpainting",
        jigsaw_class: str = "pretext.jigsaw.JigsawProbe",
    ) -> None:
        super().__init__()
        if n_masked < 1:
            raise ValueError(f"model.init_args.n_masked must be >= 1, got {n_masked}")
        self.save_hyperparameters()
        self.inpainting = load_frozen(inpainting_class, inpainting_checkpoint, encoder_weights=None)
        self.jigsaw = load_frozen(
            jigsaw_class,
            jigsaw_checkpoint,
            encoder_weights=None,
            encoder_checkpoint=None,
            freeze_encoder=False,
        )
        for name, model in (("inpainting", self.inpainting), ("jigsaw", self.jigsaw)):
            saved = model.hparams.get("in_channels")
            if saved is not None and saved != in_channels:
                raise ValueError(
                    f"{name} checkpoint {getattr(self.hparams, name + '_checkpoint')} was trained on "
                    f"{saved}-channel images but data.in_channels={in_channels}"
                )
        self.k: int | None = None
        self._penalty: Penalty | None = None

    def on_test_start(self) -> None:
        """Read k from the data section and apply the ``n > k/2`` rule before any batch."""
        config = getattr(self.trainer.datamodule, "superpixels", None)
        if config is None or config.source == "gpu":
            raise ValueError(
                "the proxy objective needs superpixel maps in the batch: set data.init_args.superpixels "
                "with source 'cpu' or 'cache'"
            )
        self.k = config.params.get("n_segments")
        self._penalty = None
        if self.hparams.penalise_half_k:
            self._penalty = half_k_penalty(self.k, self.hparams.n_masked)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Per-batch losses under the policy; stops evaluating once the policy is penalised."""
        if self._penalty is not None:
            return
        counts = superpixel_counts(batch["superpixels"])
        self._penalty = real_count_penalty(self.k, self.hparams.n_masked, counts, list(batch["id"]))
        if self._penalty is not None:
            return
        # Eval mode each batch: Lightning's test loop leaves children as they are, frozen probes
        # override train() and must keep their BatchNorm statistics.
        self.inpainting.eval()
        self.jigsaw.eval()
        losses = evaluate_batch(
            self.inpainting,
            self.jigsaw,
            batch,
            self.hparams.n_masked,
            self.hparams.seed,
            self.hparams.fill,
            self.k,
        )
        row = {
            "id": f"batch_{batch_idx:05d}",
            "jigsaw": losses.jigsaw,
            "inpainting": losses.inpainting,
            "masked_fraction": losses.masked_fraction,
            "min_count": min(counts),
        }
        self.add_test_rows([row])
        rows = self._test_rows
        running = proxy_objective([r["jigsaw"] for r in rows], [r["inpainting"] for r in rows])
        if self._report_to_nni():
            import nni

            nni.report_intermediate_result(float(running))

    def _report_to_nni(self) -> bool:
        flag = self.hparams.report_to_nni
        return nni_active() if flag is None else bool(flag)

    def summarise_test(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The objective (or the penalty) and the raw mean losses of the per-batch rows.

        Raises:
            ValueError: If the test loader served no batch and no penalty applies.
        """
        jig, inp = [r["jigsaw"] for r in rows], [r["inpainting"] for r in rows]
        nan = float("nan")
        mean: dict[str, float] = {
            "raw_jigsaw": float(np.mean(jig)) if jig else nan,
            "raw_inpainting": float(np.mean(inp)) if inp else nan,
            "masked_fraction": float(np.mean([r["masked_fraction"] for r in rows])) if rows else nan,
        }
        summary: dict[str, Any] = {"num_batches": len(rows), "k": self.k, "n": self.hparams.n_masked}
        if self._penalty is not None:
            mean.update(
                objective=penalised_value(self._penalty, self.hparams.penalty),
                penalised=1.0,
                norm_loss_jigsaw=nan,
                norm_loss_inpainting=nan,
            )
            summary["penalty_rule"] = self._penalty.rule
            summary["penalty_reason"] = self._penalty.reason
        else:
            if not rows:
                raise ValueError("the test loader served no batch: nothing to evaluate the policy on")
            mean.update(
                objective=proxy_objective(jig, inp),
                penalised=0.0,
                norm_loss_jigsaw=norm_loss(jig),
                norm_loss_inpainting=norm_loss(inp),
            )
            log.info(
                "policy k=%s n=%s: objective %.6f over %d batches",
                self.k,
                self.hparams.n_masked,
                mean["objective"],
                len(rows),
            )
        summary["mean"] = mean
        return summary

    def configure_optimizers(self) -> None:
        """Nothing is trained."""
        return None
