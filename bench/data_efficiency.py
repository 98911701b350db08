"""Data efficiency (SSL-MedSeg style): fine-tune from random / MIM / BYOL encoders on labelled fractions.

Every run goes through ``run.main`` in-process (``configs/downstream_sample.yaml`` by default) with
``--data.percent P --data.oversample true --seed S --data.seed S``; the test Dice (foreground classes,
per image at the original resolution) of the best-validation checkpoint is collected.

    python bench/data_efficiency.py --percents 0.1 0.25 1.0 --seeds 0 1 2 --epochs 8
    python bench/data_efficiency.py --byol-ckpt runs/byol_sample/version_0/checkpoints/last.ckpt \\
        --mim-ckpt runs/inpainting_sample/version_0/checkpoints/last.ckpt

Without ``--byol-ckpt`` / ``--mim-ckpt`` the encoders are pretrained first with
``configs/byol_sample.yaml`` / ``configs/config_inpainting_sample.yaml`` (the last checkpoint is used, as
SSL-MedSeg transfers the last BYOL epoch). On volumes (per-case 3D test Dice), with the configs
that read the sample CT volume directly:

    python bench/data_efficiency.py --downstream-config configs/downstream_volume_sample.yaml \\
        --byol-config configs/byol_volume_sample.yaml --mim-config configs/mim_volume_sample.yaml \\
        --percents 0.34 1.0 --seeds 0 1 2 --image-size 96 --out runs/data_efficiency_volume

Writes ``results.csv`` (rewritten after every run) and
``data_efficiency.png`` into ``--out``, and prints a markdown table of mean +- std test Dice.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datasets.atomic_io import atomic_path, atomic_write_csv  # noqa: E402

PRETRAIN_CONFIGS = {"byol": "configs/byol_sample.yaml", "mim": "configs/config_inpainting_sample.yaml"}
FIELDS = ("init", "percent", "seed", "dice", "seconds", "run_dir")
# best checkpoint on validation Dice, without overlay images (seconds matter in a sweep)
CALLBACKS = json.dumps(
    [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"monitor": "val/dice", "mode": "max", "save_last": False, "filename": "best"},
        }
    ]
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the experiment."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inits", nargs="+", default=["random", "mim", "byol"], choices=["random", "mim", "byol"])
    p.add_argument("--mim-ckpt", default=None, help="MIM (inpainting) checkpoint; default: pretrain one")
    p.add_argument("--byol-ckpt", default=None, help="BYOL checkpoint; default: pretrain one")
    p.add_argument("--percents", nargs="+", type=float, default=[0.1, 0.25, 1.0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs per run")
    p.add_argument("--pretrain-epochs", type=int, default=15, help="epochs of each pretraining run")
    p.add_argument("--downstream-config", default="configs/downstream_sample.yaml")
    p.add_argument("--byol-config", default=PRETRAIN_CONFIGS["byol"], help="BYOL pretraining config")
    p.add_argument("--mim-config", default=PRETRAIN_CONFIGS["mim"], help="MIM pretraining config")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--out", default="runs/data_efficiency", help="output folder")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more overrides for every fine-tune")
    return p.parse_args(argv)


def _pretrain_overrides(kind: str, image_size: int) -> list[str]:
    """Make each pretext run at ``image_size`` (the MIM sample config crops to a fixed 128)."""
    if kind == "byol":
        return ["--model.crop_size", str(image_size)]
    crop = {
        "name": "RandomResizedCrop",
        "size": [image_size, image_size],
        "scale": [0.36, 1.0],
        "ratio": [1, 1],
    }
    flips = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5}]
    photo = {"name": "RandomBrightnessContrast", "brightness_limit": 0.2, "contrast_limit": 0.2, "p": 1.0}
    spec = [crop, *flips, {"name": "Rotate", "limit": 15, "p": 1.0}, photo]
    return ["--data.train_transforms", json.dumps(spec)]


def _quiet() -> list[str]:
    # in-process loaders: forked workers of a long-lived process that already ran threaded code can
    # deadlock (seen with the superpixel workers of the MIM config)
    return [
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--data.num_workers",
        "0",
    ]


def pretrain(kind: str, epochs: int, image_size: int, out: Path, config_path: str | None = None) -> str:
    """Run a pretext config on the sample and return its last checkpoint.

    Raises:
        FileNotFoundError: If the pretext config is missing or the run wrote no last.ckpt.
    """
    from run import main

    config = REPO / (config_path or PRETRAIN_CONFIGS[kind])
    if not config.is_file():
        raise FileNotFoundError(f"--inits {kind} without --{kind}-ckpt needs {config} to pretrain one")
    t0 = time.perf_counter()
    result = main(
        ["--cfg", str(config), "--runs_dir", str(out / "runs"), "--name", f"pretrain_{kind}"]
        + ["--trainer.max_epochs", str(epochs), "--data.image_size", str(image_size)]
        + _pretrain_overrides(kind, image_size)
        + _quiet()
    )
    last = Path(result["run_dir"]) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"pretraining {kind} wrote no {last}")
    print(f"[pretrain] {kind}: {epochs} epochs in {time.perf_counter() - t0:.0f} s -> {last}", flush=True)
    return str(last)


def finetune(args: argparse.Namespace, init: str, ckpt: str | None, percent: float, seed: int) -> dict:
    """One fine-tuning run; returns a results row."""
    from run import main

    argv = ["--cfg", str(REPO / args.downstream_config), "--runs_dir", str(Path(args.out) / "runs")]
    argv += ["--name", f"{init}_p{percent:g}_s{seed}", "--trainer.max_epochs", str(args.epochs)]
    argv += ["--data.percent", str(percent), "--data.oversample", "true"]
    argv += ["--seed", str(seed), "--data.seed", str(seed), "--data.image_size", str(args.image_size)]
    argv += ["--model.hd95_in_test", "false", "--trainer.callbacks", CALLBACKS, *_quiet()]
    if ckpt is not None:
        argv += ["--model.pretrained", ckpt]
    t0 = time.perf_counter()
    result = main(argv + list(args.extra))
    row = {
        "init": init,
        "percent": percent,
        "seed": seed,
        "dice": float(result["test"]["dice"]),
        "seconds": round(time.perf_counter() - t0, 1),
        "run_dir": result["run_dir"],
    }
    print(
        f"[finetune] {init} p={percent:g} seed={seed}: test dice {row['dice']:.4f} ({row['seconds']} s)",
        flush=True,
    )
    return row


def write_csv(rows: list[dict], path: Path) -> None:
    """Write the rows atomically (temp file + rename)."""
    atomic_write_csv(path, rows, FIELDS)


def summarise(rows: list[dict]) -> dict[tuple[str, float], tuple[float, float, int]]:
    """Mean, sample std (0 for one run) and count of test Dice per (init, percent)."""
    groups: dict[tuple[str, float], list[float]] = {}
    for row in rows:
        groups.setdefault((row["init"], float(row["percent"])), []).append(float(row["dice"]))
    return {
        key: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
        for key, v in groups.items()
    }


def markdown_table(summary: dict, inits: list[str], percents: list[float]) -> str:
    """Rows: labelled fraction; columns: initialisation; cells: mean +- std (n)."""
    lines = ["| labelled fraction | " + " | ".join(inits) + " |", "|---" * (len(inits) + 1) + "|"]
    for percent in percents:
        cells = []
        for init in inits:
            mean, std, n = summary.get((init, percent), (float("nan"), float("nan"), 0))
            cells.append(f"{mean:.3f} +- {std:.3f} (n={n})")
        lines.append(f"| {percent:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict, inits: list[str], percents: list[float], path: Path) -> None:
    """Mean +- std test Dice against the labelled fraction, one line per initialisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for init in inits:
        xs = [p for p in percents if (init, p) in summary]
        means = [summary[(init, p)][0] for p in xs]
        stds = [summary[(init, p)][1] for p in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=init)
    ax.set_xscale("log")
    ax.set_xticks(percents, [f"{p:g}" for p in percents])
    ax.set_xlabel("labelled fraction of the training set")
    ax.set_ylabel("test Dice (foreground, mean +- std over seeds)")
    ax.set_title("Data efficiency on the abdominal CT sample")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    """Pretrain what is missing, fine-tune every (init, percent, seed), write CSV + plot, print the table."""
    import torch

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
        f"threads {torch.get_num_threads()}",
        flush=True,
    )
    ckpts: dict[str, str | None] = {"random": None, "mim": args.mim_ckpt, "byol": args.byol_ckpt}
    for kind in ("mim", "byol"):
        if kind in args.inits and ckpts[kind] is None:
            ckpts[kind] = pretrain(
                kind, args.pretrain_epochs, args.image_size, out, getattr(args, f"{kind}_config")
            )
    rows: list[dict] = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        for percent in args.percents:
            for init in args.inits:
                rows.append(finetune(args, init, ckpts[init], percent, seed))
                write_csv(rows, out / "results.csv")
    summary = summarise(rows)
    plot(summary, args.inits, args.percents, out / "data_efficiency.png")
    print(f"\n{len(rows)} fine-tuning runs in {time.perf_counter() - t0:.0f} s; checkpoints: {ckpts}")
    print(f"results: {out / 'results.csv'}, plot: {out / 'data_efficiency.png'}\n")
    print(markdown_table(summary, args.inits, args.percents))
    return rows


if __name__ == "__main__":
    main()
