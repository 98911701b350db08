"""ALPNet 1-shot Dice: trained vs untrained network, over seeds, on a few-shot config.

Each (seed, steps) pair is one ``run.main`` run of the config (``steps = 0``: the untrained network,
tested as initialised). Writes ``fewshot_comparison.csv`` and prints a markdown table of mean +- std
Dice per organ over seeds for every step count.

Usage::

    python bench/fewshot_sample.py --config configs/fewshot_sample.yaml --seeds 42 1 2 --steps 0 300 500
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run  # noqa: E402
from datasets.atomic_io import atomic_write_csv  # noqa: E402


def run_one(config: str, runs_dir: Path, seed: int, steps: int, extra: list[str]) -> dict:
    """Train ``steps`` iterations (0: none) with ``seed`` and return the test Dice means."""
    argv = ["--cfg", config, "--runs_dir", str(runs_dir), "--name", f"s{seed}_it{steps}"]
    argv += ["--seed", str(seed), "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false"]
    return run.main(argv + extra)["test"]


def markdown_table(rows: list[dict]) -> str:
    """Mean +- std over seeds of every ``dice_*`` column, one line per step count."""
    keys = [k for k in rows[0] if k.startswith("dice_")]
    lines = ["| iterations | seeds | " + " | ".join(k[5:] for k in keys) + " |"]
    lines.append("|---" * (len(keys) + 2) + "|")
    for steps in dict.fromkeys(r["steps"] for r in rows):
        group = [r for r in rows if r["steps"] == steps]
        cells = [f"{np.mean([r[k] for r in group]):.3f} +- {np.std([r[k] for r in group]):.3f}" for k in keys]
        lines.append(f"| {steps} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the comparison; returns the CSV rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/fewshot_sample.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 300, 500])
    parser.add_argument("--out", default="bench_out/fewshot")
    # Any other ``--dotted.key value`` pairs are passed to every run as overrides.
    args, overrides = parser.parse_known_args(argv)
    if any(s < 0 for s in args.steps):
        parser.error(f"--steps must be >= 0, got {args.steps}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {args.config}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fewshot_bench_") as work:
        for steps in args.steps:
            for seed in args.seeds:
                start = time.perf_counter()
                test = run_one(args.config, Path(work), seed, steps, overrides)
                rows.append(
                    {"steps": steps, "seed": seed, "seconds": round(time.perf_counter() - start, 1), **test}
                )
                print(rows[-1], flush=True)
                atomic_write_csv(out / "fewshot_comparison.csv", rows, list(rows[0]))
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
