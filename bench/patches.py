"""Resize vs native-resolution patches at equal training steps: where small structures need patches.

Both arms train the config's network on ``--size`` x ``--size`` inputs for the same epochs, batch
size and number of steps (one input per training image per epoch), so each step costs the same:
``resize`` shrinks every image to ``--size`` (``data.image_size``); ``patch`` cuts ``--size`` patches at
native resolution (``data.sampling: patch``, ``--foreground-fraction`` of them centred on a random
foreground class present) and validates/tests by sliding windows. Test metrics are at each image's
original resolution in both arms. ``--reference-size N`` adds resize at side N (e.g. the native size,
more pixels per step) as a reference. Prints the environment, one row per run and a markdown table of
mean +- std over seeds (foreground Dice, HD95, and both over ``--small-classes``); the unrounded
per-run values go to ``patches.csv``.

Usage::

    OMP_NUM_THREADS=1 python bench/patches.py --config configs/demo_ct.yaml --size 64 --epochs 60 \\
        --small-classes 3 4 --reference-size 128
    OMP_NUM_THREADS=1 python bench/patches.py --config configs/demo.yaml --size 32 --epochs 40 \\
        --reference-size 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run  # noqa: E402
from datasets.atomic_io import atomic_write_csv  # noqa: E402

METRICS = ("dice", "hd95", "dice_small", "hd95_small")


def _arms(size: int, fraction: float, reference: int | None) -> list[tuple[str, list[str]]]:
    patches = json.dumps({"patch_size": size, "foreground_fraction": fraction})
    arms = [
        ("resize", ["--data.init_args.image_size", str(size)]),
        ("patch", ["--data.init_args.sampling", "patch", "--data.init_args.patches", patches]),
    ]
    if reference is not None:
        arms.append((f"resize_{reference}", ["--data.init_args.image_size", str(reference)]))
    return arms


def _row(arm: str, seed: int, seconds: float, test: dict, small: list[str]) -> dict:
    row: dict = {"arm": arm, "seed": seed, "seconds": round(seconds, 1)}
    for metric in ("dice", "hd95"):
        row[metric] = float(test.get(metric, float("nan")))
        row[f"{metric}_small"] = float(np.nanmean([test.get(f"{metric}_{c}", np.nan) for c in small]))
    for key in sorted(k for k in test if k.startswith(("dice_", "hd95_"))):
        row[key] = float(test[key])
    return row


def markdown_table(rows: list[dict]) -> str:
    """Mean +- std over seeds per arm (population std, as the other benches)."""
    head = "| arm | seeds | " + " | ".join(METRICS) + " | seconds |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        group = [r for r in rows if r["arm"] == arm]
        cells = [f"{np.mean([r[m] for r in group])} +- {np.std([r[m] for r in group])}" for m in METRICS]
        seconds = np.mean([r["seconds"] for r in group])
        lines.append(f"| {arm} | {len(group)} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every arm for every seed; returns the CSV rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/demo_ct.yaml", help="a resize-mode config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--size", type=int, default=64, help="network input side of both arms")
    parser.add_argument("--foreground-fraction", type=float, default=0.5)
    parser.add_argument(
        "--small-classes",
        nargs="+",
        default=["1"],
        help="ids of the small classes (per-class metrics exist with 3+ classes; binary: dice is it)",
    )
    parser.add_argument("--reference-size", type=int, default=None, help="add resize at this side")
    parser.add_argument("--out", default="bench_out/patches")
    args, overrides = parser.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads); {args.config}, {args.epochs} epochs, "
        f"size {args.size}, foreground_fraction {args.foreground_fraction}"
    )
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="patch_bench_"))
    try:
        for seed in args.seeds:
            for arm, extra in _arms(args.size, args.foreground_fraction, args.reference_size):
                argv_run = ["--cfg", args.config, "--runs_dir", str(work), "--name", f"{arm}_s{seed}"]
                argv_run += ["--seed", str(seed), "--trainer.max_epochs", str(args.epochs)]
                argv_run += ["--trainer.enable_progress_bar", "false", *extra, *overrides]
                start = time.perf_counter()
                result = run.main(argv_run)
                seconds = time.perf_counter() - start
                rows.append(_row(arm, seed, seconds, result["test"], args.small_classes))
                print(rows[-1], flush=True)
                atomic_write_csv(out / "patches.csv", rows, list(rows[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
