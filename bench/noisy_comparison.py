"""Noisy-label benchmark: baseline vs method over seeds and noise settings, plus the clean upper bound.

For each noise setting (alpha, beta) and seed, noisy labels are simulated into a temporary copy of
the dataset (files symlinked, so the original is never written), then the method and every baseline
are trained and tested in-process with ``run.main``; the clean config gives the upper bound. A run's
role in the table is its config's ``model.init_args.method`` (``plain``, ``coteaching``, ``jocor``,
``jocor_sp``) or ``clean``. Writes ``noisy_comparison.csv`` and ``noisy_comparison.png`` (test Dice vs
noise) and prints a markdown table of mean +- std over seeds.

Usage::

    python bench/noisy_comparison.py --config configs/noisy_sample.yaml \\
        --baselines configs/noisy_sample_plain.yaml configs/noisy_sample_jocor.yaml \\
        --clean configs/noisy_sample_clean.yaml --epochs 30 --out bench_out/noisy \\
        [--data.init_args.image_size 64 ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run  # noqa: E402
from core.config_stack import expand_config  # noqa: E402
from datasets.atomic_io import atomic_path, atomic_write_csv  # noqa: E402
from datasets.noise.cli import generate_noisy_dataset  # noqa: E402


def _init_args(config: str, section: str) -> dict:
    """The merged ``<section>.init_args`` of a (stacked) config file."""
    merged: dict = {}
    for _, content in expand_config(config):
        merged.update((content.get(section) or {}).get("init_args") or {})
    return merged


def _role(config: str) -> str:
    """A run's name in the table: its model's ``method``."""
    method = _init_args(config, "model").get("method")
    if method is None:
        raise ValueError(f"{config}: model.init_args.method is not set; expected a noisy-label config")
    return str(method)


def _train(config: str, runs_dir: Path, name: str, seed: int, epochs: int, extra: list[str]) -> dict:
    argv = ["--cfg", config, "--runs_dir", str(runs_dir), "--name", name, "--seed", str(seed)]
    argv += ["--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false"] + extra
    return run.main(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the comparison; returns the CSV rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/noisy_sample.yaml", help="The method's config.")
    parser.add_argument("--baselines", nargs="+", default=["configs/noisy_sample_plain.yaml"])
    parser.add_argument("--clean", default="configs/noisy_sample_clean.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["0.5:0.5", "0.9:0.7"], help="alpha:beta pairs")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-angle", type=float, default=30.0)
    parser.add_argument("--out", default="bench_out/noisy_comparison")
    # Any other ``--dotted.key value`` pairs are passed to every run as overrides.
    args, overrides = parser.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = _init_args(args.config, "data")
    root, layout, num_classes = data["root"], data.get("layout", "folder"), int(data.get("num_classes", 2))
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.epochs} epochs"
    )
    configs = [*args.baselines, args.config]
    roles = [_role(c) for c in configs]
    if len(set(roles)) != len(roles):
        parser.error(f"configs {configs} have methods {roles}; expected one config per method")
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="noisy_bench_"))
    try:
        copy = work / "data"
        shutil.copytree(Path(root).resolve(), copy, copy_function=os.symlink)
        jobs = [("clean", 0.0, 0.0, "clean", args.clean)]
        for setting in args.settings:
            alpha, beta = (float(v) for v in setting.split(":"))
            label = f"a{alpha:g}_b{beta:g}"
            jobs += [(label, alpha, beta, role, c) for role, c in zip(roles, configs, strict=True)]
        for seed in args.seeds:
            for label, alpha, beta, role, config in jobs:
                extra = list(overrides)
                if role != "clean":
                    view = copy / f"noisy_a{round(alpha * 100)}_b{round(beta * 100)}_s{seed}"
                    if not view.exists():
                        generate_noisy_dataset(
                            copy, layout, alpha, beta, seed, num_classes, max_angle=args.max_angle
                        )
                    extra += ["--data.init_args.root", str(view), "--data.init_args.layout", "noisy"]
                    extra += ["--model.init_args.keep_rates", "null"]
                start = time.perf_counter()
                result = _train(config, work / "runs", f"{label}_{role}_s{seed}", seed, args.epochs, extra)
                row = {
                    "setting": label,
                    "alpha": alpha,
                    "beta": beta,
                    "seed": seed,
                    "role": role,
                    "config": config,
                    "seconds": round(time.perf_counter() - start, 1),
                    **{k: result["test"].get(k, float("nan")) for k in ("dice", "iou", "hd95")},
                }
                rows.append(row)
                print(row, flush=True)
                atomic_write_csv(out / "noisy_comparison.csv", rows, list(rows[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _plot(rows, out / "noisy_comparison.png")
    print(markdown_table(rows))
    return rows


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[float]]:
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        groups.setdefault((row["setting"], row["role"]), []).append(float(row["dice"]))
    return groups


def markdown_table(rows: list[dict]) -> str:
    """Markdown table of test Dice mean +- std over seeds per setting and role."""
    lines = ["| setting | role | n | Dice mean +- std |", "|---|---|---|---|"]
    for (setting, role), values in _groups(rows).items():
        lines.append(
            f"| {setting} | {role} | {len(values)} | {np.mean(values):.4f} +- {np.std(values):.4f} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(rows)
    settings = list(dict.fromkeys(r["setting"] for r in rows if r["role"] != "clean"))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for role in dict.fromkeys(r["role"] for r in rows if r["role"] != "clean"):
        means = [np.mean(groups.get((s, role), [np.nan])) for s in settings]
        stds = [np.std(groups.get((s, role), [np.nan])) for s in settings]
        ax.errorbar(settings, means, yerr=stds, marker="o", capsize=3, label=role)
    if ("clean", "clean") in groups:
        ax.axhline(np.mean(groups[("clean", "clean")]), color="grey", linestyle="--", label="clean")
    ax.set_xlabel("noise setting (alpha, beta)")
    ax.set_ylabel("test Dice")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)


if __name__ == "__main__":
    main()
