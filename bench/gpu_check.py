"""One prepared GPU check: run.py on CUDA (precisions, DDP), MIM with GPU superpixels, torch SLIC.

On the GPU machine (through ``bench/gpu_check.sh``, which installs the carried wheels first)::

    python bench/gpu_check.py --device cuda --out $OUT/gpu_check.json

The same script runs on the CPU with tiny sizes (``--device cpu --quick``; a test runs it), so it
cannot rot. It writes one JSON and prints a table. Sections:

- ``run_py``: ``run.py --cfg configs/demo.yaml`` and a 256 px UNet-32 variant, each precision and
  ``--trainer.strategy ddp`` (one process: NCCL on CUDA, gloo on CPU); exit code, test Dice, train
  images/s (timed by :class:`StepTimer`, a callback added with ``--trainer.callbacks+``) and the ratio
  of the framework's step rate to a plain PyTorch loop (same network, loss, batches, precision).
- ``mim``: superpixel-inpainting steps with superpixels computed on the device vs given maps.
- ``slic``: batched torch SLIC images/s with and without connectivity, segment count, boundary recall
  vs numba on the same images, and the memory-bandwidth floor (see :func:`bandwidth_floor_us`).
- ``sp_generation``: ``sp_generation.py --backend torch`` on the embedded sample, then ``--verify``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from bench.gpu_check_parts import (  # noqa: E402
    bandwidth_floor_us,
    mim_rates,
    plain_loop_rate,
    slic_figures,
    table,
)


class StepTimer(L.Callback):
    """Times training steps (batch end to batch end, first epoch skipped) and writes them as JSON."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.times: list[float] = []
        self.batch_size = 0

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx):
        """Record the time of each step after the first epoch (warm-up, cuDNN autotune)."""
        if trainer.current_epoch >= 1:
            self.times.append(time.perf_counter())
            self.batch_size = int(batch["image"].shape[0])

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Write steps/s and images/s (rank 0)."""
        if trainer.is_global_zero and len(self.times) > 1:
            per_step = (self.times[-1] - self.times[0]) / (len(self.times) - 1)
            rates = {"steps_per_s": 1.0 / per_step, "images_per_s": self.batch_size / per_step}
            Path(self.path).write_text(json.dumps(rates))


def variants(device: str, quick: bool) -> list[tuple[str, list[str]]]:
    """``(name, run.py overrides)`` for each configuration to train and test."""
    accel = "gpu" if device == "cuda" else "cpu"
    precisions = ["32-true", "16-mixed", "bf16-mixed"] if device == "cuda" else ["32-true", "bf16-mixed"]
    size = ["--data.image_size", "32", "--model.model_kwargs", '{"base_channel": 4}'] if quick else []
    big = ["--data.image_size", "64" if quick else "256", "--model.model_kwargs", '{"base_channel": 32}']
    out = [(f"demo {p}", ["--trainer.precision", p, *size]) for p in precisions]
    out.append(
        ("demo ddp bf16-mixed", ["--trainer.precision", "bf16-mixed", "--trainer.strategy", "ddp", *size])
    )
    out.append(("unet32-256 bf16-mixed", ["--trainer.precision", "bf16-mixed", *big]))
    common = [
        "--trainer.accelerator",
        accel,
        "--trainer.devices",
        "1",
        "--trainer.enable_progress_bar",
        "false",
    ]
    return [(name, common + extra) for name, extra in out]


def run_cli(name: str, extra: list[str], work: Path, epochs: int, timeout: int) -> dict:
    """Train + test one variant through ``run.py`` in a subprocess; return its figures."""
    timer = work / f"timer_{len(list(work.glob('timer_*')))}.json"
    callback = json.dumps({"class_path": "bench.gpu_check.StepTimer", "init_args": {"path": str(timer)}})
    argv = [sys.executable, str(REPO / "run.py"), "--cfg", str(REPO / "configs" / "demo.yaml")]
    argv += [
        "--runs_dir",
        str(work / "runs"),
        "--name",
        name.replace(" ", "_"),
        "--trainer.max_epochs",
        str(epochs),
    ]
    argv += ["--trainer.callbacks+", callback, *extra]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    row = {"name": name, "rc": proc.returncode, "seconds": time.perf_counter() - start}
    if proc.returncode != 0:
        row["error"] = proc.stderr[-2000:]
        return row
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    row["test_dice"] = result["test"].get("dice")
    row["test_written"] = (Path(result["run_dir"]) / "test_summary.json").is_file()
    row.update(json.loads(timer.read_text()) if timer.is_file() else {})
    return row


def run_py_section(args: argparse.Namespace, work: Path) -> list[dict]:
    """Every run.py variant, each followed by the plain loop on the same setup."""
    rows = []
    for name, extra in variants(args.device, args.quick):
        row = run_cli(name, extra, work, args.epochs, args.timeout)
        if row["rc"] == 0 and "steps_per_s" in row and "ddp" not in name:
            plain = plain_loop_rate(extra, args.device, steps=args.plain_steps)
            row["plain_steps_per_s"] = plain
            row["framework_vs_plain"] = row["steps_per_s"] / plain
        rows.append(row)
        print(table([row]), flush=True)
    return rows


def sp_generation_section(device: str, work: Path, timeout: int) -> dict:
    """``sp_generation.py --backend torch`` on the CT sample into a temporary cache, then ``--verify``."""
    base = [
        sys.executable,
        str(REPO / "sp_generation.py"),
        "--root",
        str(REPO / "datasets/sample/abdomen_ct"),
        "--layout",
        "folder",
    ]
    base += [
        "--out",
        str(work / "sp_cache"),
        "--backend",
        "torch",
        "--device",
        device,
        "--k",
        "128",
        "--size",
        "128",
    ]
    out = {}
    for step, extra in (("generate", []), ("verify", ["--verify"])):
        start = time.perf_counter()
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        out[step] = {
            "rc": proc.returncode,
            "seconds": time.perf_counter() - start,
            "tail": proc.stdout[-300:],
        }
        if proc.returncode != 0:
            out[step]["error"] = proc.stderr[-1000:]
    return out


def environment(device: str) -> dict:
    """Device name and library versions for the README's table."""
    env = {"torch": torch.__version__, "lightning": L.__version__, "python": platform.python_version()}
    if device == "cuda":
        env.update(
            gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version()
        )
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def main(argv: list[str] | None = None) -> dict:
    """Run every section; write the JSON to ``--out`` and return it."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run.py variant (default 5, quick 2)"
    )
    parser.add_argument("--timeout", type=int, default=300, help="seconds per subprocess")
    parser.add_argument("--skip", nargs="*", default=[], choices=["run_py", "mim", "slic", "sp_generation"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible (use --device cpu --quick for the smoke test)")
    args.epochs = args.epochs or (2 if args.quick else 5)
    args.plain_steps = 4 if args.quick else 50
    report: dict = {"environment": environment(args.device), "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sections = {
            "run_py": lambda: run_py_section(args, work),
            "mim": lambda: mim_rates(
                args.device, [64] if args.quick else [256, 512], 2 if args.quick else 16
            ),
            "slic": lambda: slic_figures(args.device, 64 if args.quick else 256, 4 if args.quick else 256),
            "sp_generation": lambda: sp_generation_section(args.device, work, args.timeout),
        }
        for name, section in sections.items():
            if name not in args.skip:
                report[name] = section()
                print(json.dumps({name: report[name]}, indent=1, default=str)[:3000], flush=True)
    report["bandwidth_floor_us_per_image"] = bandwidth_floor_us(256, 256, 10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
