"""The ``downstream`` objective: short MIM pretraining with the candidate policy, then a short fine-tune.

Slower but direct alternative to the proxy objective: the policy is scored by the validation Dice of a
segmentation model fine-tuned from the MIM encoder it produced. The trial reports ``1 - Dice`` so the
same ``optimize_mode: minimize`` applies.

    python -m policy_search.trial --objective downstream \
        --cfg configs/config_inpainting_sample.yaml --finetune_cfg configs/downstream_sample.yaml \
        [--mim_epochs 2] [--finetune_epochs 3] [MIM overrides]

Budget: the MIM stage runs ``budget`` epochs. With BOHB (``tuner``/``advisor`` ``BOHB``, which needs
``pip install nni[BOHB]``) the budget arrives as the parameter ``TRIAL_BUDGET`` (between ``min_budget``
and ``max_budget`` of the BOHB config); a search space may also hold a ``budget`` parameter. Without
either, ``--mim_epochs`` applies. Parameters named ``finetune.<dotted key>`` go to the fine-tune run.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


def parse_downstream_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split the downstream options from the MIM run's own ``--cfg``/override arguments.

    Returns:
        ``(options, mim_argv)``; options has ``finetune_cfg``, ``mim_epochs``, ``finetune_epochs``.

    Raises:
        SystemExit: When ``--finetune_cfg`` is missing (argparse names it).
    """
    parser = argparse.ArgumentParser(prog="policy_search.trial --objective downstream", add_help=False)
    parser.add_argument(
        "--finetune_cfg", required=True, help="Segmentation config fine-tuned from the MIM encoder."
    )
    parser.add_argument(
        "--mim_epochs", type=int, default=2, help="MIM epochs when no budget parameter is given."
    )
    parser.add_argument("--finetune_epochs", type=int, default=3, help="Fine-tune epochs.")
    return parser.parse_known_args(argv)


def downstream_objective(
    mim_argv: list[str],
    finetune_cfg: str,
    budget: int,
    finetune_epochs: int,
    finetune_overrides: list[str] | None = None,
) -> float:
    """Pretrain MIM for ``budget`` epochs, fine-tune from its encoder, return the validation Dice.

    Args:
        mim_argv: ``--cfg`` of an inpainting config plus overrides (``--aug_k``, ``--aug_n``, ...).
        finetune_cfg: Segmentation config (a ``SegmentationModule`` with ``pretrained``).
        budget: MIM epochs (BOHB's ``TRIAL_BUDGET``).
        finetune_epochs: Fine-tune epochs.
        finetune_overrides: Extra overrides of the fine-tune run.

    Returns:
        Mean per-image Dice of the fine-tuned model on the validation split.

    Raises:
        ValueError: Budget or epochs below 1, or a fine-tune run without a finite ``dice``.
        FileNotFoundError: When the MIM run left no checkpoint.
    """
    import run

    if budget < 1 or finetune_epochs < 1:
        raise ValueError(f"budget and finetune_epochs must be >= 1, got {budget} and {finetune_epochs}")
    mim = run.main([*mim_argv, "--trainer.max_epochs", str(budget)])
    ckpt = mim["best_ckpt"] or str(Path(mim["run_dir"]) / "checkpoints" / "last.ckpt")
    if not Path(ckpt).is_file():
        raise FileNotFoundError(
            f"the MIM run {mim['run_dir']} wrote no checkpoint to fine-tune from ({ckpt})"
        )
    log.info("MIM checkpoint after %d epochs: %s", budget, ckpt)
    seg = run.main(
        [
            "--cfg",
            finetune_cfg,
            "--model.init_args.pretrained",
            ckpt,
            "--trainer.max_epochs",
            str(finetune_epochs),
            # the score is validation Dice: the search never looks at the test split
            "--data.init_args.test_split",
            "val",
            *(finetune_overrides or []),
        ]
    )
    dice = float(seg["test"].get("dice", math.nan))
    if not math.isfinite(dice):
        raise ValueError(f"fine-tune run {seg['run_dir']} reported no finite 'dice' (got {seg['test']})")
    return dice
