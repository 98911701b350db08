"""Train the tiny checkpoints the sample policy search evaluates (autoSMIM step 1 in miniature).

    python -m policy_search.prepare_sample [--out runs/policy_sample] [--epochs 4] [--image_size 64]

Trains the superpixel-inpainting MIM model (``configs/config_inpainting_sample.yaml``) and then the
jigsaw probe on its frozen encoder on the embedded abdominal CT sample, smaller and shorter than the
sample configs (64 x 64, a few epochs: one to two minutes on a laptop CPU), and writes
``<out>/inpainting.ckpt`` and ``<out>/jigsaw.ckpt``, where ``configs/config_search_sample.yaml``
expects them. The checkpoints are copied atomically.

The jigsaw stage runs the same sample data with the model replaced by ``pretext.jigsaw.JigsawProbe``
(ResNet-18 encoder from the MIM checkpoint, frozen) by default; ``--jigsaw_cfg FILE`` runs a jigsaw
config instead (its ``model.init_args.encoder_checkpoint`` is set to the new MIM checkpoint).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from core.errors import run_entry_point
from datasets.atomic_io import atomic_path

INPAINTING_CFG = "configs/config_inpainting_sample.yaml"
JIGSAW_MODEL = {
    "class_path": "pretext.jigsaw.JigsawProbe",
    "init_args": {
        "encoder_name": "resnet18",
        "freeze_encoder": True,
        "tile_features": 512,
        "optim": {"lr": 0.001},
    },
}
JIGSAW_CALLBACKS = [
    {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {
            "monitor": "val/loss",
            "mode": "min",
            "save_last": True,
            "filename": "best-{epoch:03d}",
            "auto_insert_metric_name": False,
        },
    }
]


def _copy_atomic(src: str | Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def common_overrides(epochs: int, image_size: int, runs_dir: str, seed: int) -> list[str]:
    """Overrides shared by both stages: small images, short runs, no worker processes."""
    transforms = [
        {
            "name": "RandomResizedCrop",
            "size": [image_size, image_size],
            "scale": [0.5, 1.0],
            "ratio": [1.0, 1.0],
            "p": 1.0,
        },
        {"name": "HorizontalFlip", "p": 0.5},
    ]
    return [
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.log_every_n_steps",
        "1",
        "--data.init_args.image_size",
        str(image_size),
        "--data.init_args.batch_size",
        "6",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.train_transforms",
        json.dumps(transforms),
        "--runs_dir",
        runs_dir,
        "--seed",
        str(seed),
    ]


def train_stage(cfg: str, name: str, extra: list[str], out: Path, common: list[str]) -> Path:
    """Run one training config and copy its best (else last) checkpoint to ``out``.

    Raises:
        FileNotFoundError: Missing config, or a run that wrote no checkpoint.
    """
    import run

    if not Path(cfg).is_file():
        raise FileNotFoundError(f"{cfg} not found: run from the repository root")
    result = run.main(["--cfg", cfg, "--name", name, *common, *extra])
    ckpt = result["best_ckpt"] or str(Path(result["run_dir"]) / "checkpoints" / "last.ckpt")
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"run {result['run_dir']} wrote no checkpoint ({ckpt})")
    _copy_atomic(ckpt, out)
    return out


def jigsaw_stage_args(inpainting_ckpt: Path, jigsaw_cfg: str | None) -> tuple[str, list[str]]:
    """Config and overrides of the jigsaw stage (see the module docstring)."""
    encoder = ["--model.init_args.encoder_checkpoint", str(inpainting_ckpt)]
    if jigsaw_cfg is not None:
        return jigsaw_cfg, encoder
    return INPAINTING_CFG, [
        "--model",
        json.dumps(JIGSAW_MODEL),
        *encoder,
        "--trainer.callbacks",
        json.dumps(JIGSAW_CALLBACKS),
        "--data.init_args.superpixels",
        "null",  # the probe needs no superpixel maps
    ]


def prepare(
    out_dir: str | Path, epochs: int = 4, image_size: int = 64, seed: int = 42, jigsaw_cfg: str | None = None
) -> dict[str, Path]:
    """Train the inpainting model, then the jigsaw probe on its encoder.

    Args:
        out_dir: Where ``inpainting.ckpt`` and ``jigsaw.ckpt`` go (runs are kept under ``out_dir/runs``).
        epochs: Epochs of each stage.
        image_size: Training side (even; the jigsaw splits it into 2 x 2 tiles).
        seed: Seed of both runs.
        jigsaw_cfg: A jigsaw config to run instead of the built-in probe settings.

    Returns:
        ``{"inpainting": path, "jigsaw": path}``.
    """
    out = Path(out_dir)
    common = common_overrides(epochs, image_size, str(out / "runs"), seed)
    inpainting = train_stage(
        INPAINTING_CFG,
        "inpainting",
        [
            "--data.init_args.superpixels.params",
            json.dumps({"n_segments": 64, "compactness": 0.1}),
            "--model.init_args.n_masked",
            "8",
        ],
        out / "inpainting.ckpt",
        common,
    )
    cfg, extra = jigsaw_stage_args(inpainting, jigsaw_cfg)
    jigsaw = train_stage(cfg, "jigsaw", extra, out / "jigsaw.ckpt", common)
    return {"inpainting": inpainting, "jigsaw": jigsaw}


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Command-line entry (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/policy_sample", help="Folder of the two checkpoints.")
    parser.add_argument("--epochs", type=int, default=4, help="Epochs per stage.")
    parser.add_argument("--image_size", type=int, default=64, help="Side of the training images (even).")
    parser.add_argument("--seed", type=int, default=42, help="Seed of both runs.")
    parser.add_argument(
        "--jigsaw_cfg", default=None, help="Jigsaw config instead of the built-in probe settings."
    )
    args = parser.parse_args(argv)
    paths = prepare(args.out, args.epochs, args.image_size, args.seed, args.jigsaw_cfg)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return paths


if __name__ == "__main__":
    sys.exit(run_entry_point("python -m policy_search.prepare_sample", main))
