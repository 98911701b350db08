"""Measurements of ``bench/gpu_check.py``: plain-loop reference, MIM step rates, torch SLIC figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
HBM_BYTES_PER_S = {"cuda": 4.8e12, "cpu": 20e9}  # H200 HBM3e; a CPU's DRAM, for the smoke mode only


def sync(device: torch.device) -> None:
    """Wait for the device (timings must not stop at a kernel launch)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, steps: int, warmup: int = 2) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` calls, synchronised on ``device``."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def _option(extra: list[str], key: str, default: str) -> str:
    return extra[extra.index(key) + 1] if key in extra else default


def plain_loop_rate(extra: list[str], device: str, steps: int) -> float:
    """Steps/s of a plain PyTorch loop on the run.py variant's network, loss, batches and precision.

    The task module and data module come from the same config and overrides as the run; the loop is
    forward, loss, backward and Adam on batches already on the device (no Lightning, no loader).
    """
    from engine.cli import FrameworkCLI, translate_argv
    from models.task import TaskModule

    args = ["--cfg", str(REPO / "configs/demo.yaml"), *extra, "--trainer.max_epochs", "1"]
    args += ["--runs_dir", str(Path(torch.__file__).parent / "__never_written__")]
    cli = FrameworkCLI(args=translate_argv(args))
    model: TaskModule = cli.model.to(device)
    cli.datamodule.setup("fit")
    batches = [
        {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
        for _, b in zip(range(4), cli.datamodule.train_dataloader(), strict=False)
    ]
    precision = _option(extra, "--trainer.precision", "32-true")
    dtype = DTYPES.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "16-mixed")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    state = {"i": 0}

    def step() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            loss = model.loss_fn(model(batch["image"]), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return 1.0 / timed(step, torch.device(device), steps)


def _mim_model(source: str, k: int, device: torch.device) -> torch.nn.Module:
    from pretext.inpainting import SuperpixelInpainting

    torch.manual_seed(0)
    model = SuperpixelInpainting(
        in_channels=3,
        encoder_name="resnet18",
        n_masked=max(1, k // 4),
        superpixel_source=source,
        superpixel_params={"n_segments": k, "compactness": 10.0},
        on_excess="clamp",
    )
    return model.to(device)


def mim_rates(device: str, sizes: list[int], batch: int) -> list[dict]:
    """MIM (bf16 on CUDA) images/s with superpixels computed on the device vs given (cached) maps.

    Also the fraction of the device-superpixel step spent computing the superpixels alone. The
    loader is excluded on both sides (batches already on the device).
    """
    from datasets.superpixels.engine import superpixels

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else None
    rows = []
    for size in sizes:
        k = 512 if size >= 256 else 32
        g = torch.Generator(device="cpu").manual_seed(0)
        coarse = torch.rand(batch, 3, 16, 16, generator=g)
        image = (torch.nn.functional.interpolate(coarse, size=size, mode="bilinear") * 2 - 1).to(dev)
        params = {"n_segments": k, "compactness": 10.0}
        unit = (image * 0.5 + 0.5).clamp(0, 1)
        maps, counts = superpixels(unit, method="slic", backend="torch", **params)
        per_source = {}
        for source in ("gpu", "batch"):
            model = _mim_model(source, k, dev)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            b = {
                "image": image,
                "index": torch.arange(batch),
                "superpixels": maps.long(),
                "superpixel_counts": counts,
            }

            def step(model=model, optimizer=optimizer, b=b) -> None:
                with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                    loss, _ = model._step(b, "train")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            per_source[source] = timed(step, dev, 3 if size < 256 else 10)
        sp_time = timed(lambda u=unit, p=params: superpixels(u, method="slic", backend="torch", **p), dev, 3)
        rows.append(
            {
                "size": size,
                "batch": batch,
                "k": k,
                "images_per_s_gpu_superpixels": batch / per_source["gpu"],
                "images_per_s_given_maps": batch / per_source["batch"],
                "ratio": per_source["batch"] / per_source["gpu"],
                "superpixel_fraction_of_step": sp_time / per_source["gpu"],
            }
        )
    return rows


def bandwidth_floor_us(h: int, w: int, iterations: int, device: str = "cuda") -> float:
    """Microseconds per image that SLIC's memory traffic alone needs on the device.

    Each assignment iteration reads the 5-channel float32 features (Lab + y, x) and writes the int32
    label and float32 best distance per pixel; the centre update reads features and labels again:
    ``(5*4 + 4 + 4 + 5*4 + 4) = 52`` bytes per pixel per iteration, divided by the HBM bandwidth.
    """
    bytes_per_image = h * w * 52 * iterations
    return bytes_per_image / HBM_BYTES_PER_S[device] * 1e6


def _test_images(size: int, batch: int) -> tuple[torch.Tensor, np.ndarray]:
    """RGB nuclei sample images and their masks at ``size``, repeated to ``batch`` images."""
    from PIL import Image

    folder = REPO / "datasets/sample/nuclei"
    images = sorted((folder / "train/images").glob("*.png"))
    pairs = [(p, folder / "train/masks" / p.name) for p in images]
    arrays, masks = [], []
    for img_path, mask_path in pairs:
        arrays.append(np.asarray(Image.open(img_path).convert("RGB").resize((size, size)), np.float32) / 255)
        masks.append(np.asarray(Image.open(mask_path).convert("L").resize((size, size), Image.NEAREST)) > 0)
    reps = -(-batch // len(arrays))
    stack = np.stack(arrays * reps)[:batch]
    return torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous(), np.stack(masks * reps)[:batch]


def mean_recall(labels: np.ndarray, masks: np.ndarray) -> float:
    """Mean boundary recall (2 px tolerance) of superpixel maps against ground-truth masks."""
    from datasets.superpixels.quality import boundary_recall

    return float(
        np.mean([boundary_recall(lab, m.astype(np.int32)) for lab, m in zip(labels, masks, strict=True)])
    )


def slic_figures(device: str, size: int, batch: int) -> dict:
    """Torch SLIC images/s (with/without connectivity), segment count and boundary recall vs numba."""
    from datasets.superpixels.engine import superpixels

    dev = torch.device(device)
    images, masks = _test_images(size, batch)
    on_device = images.to(dev)
    params = {"n_segments": 512, "compactness": 10.0}
    out: dict = {"size": size, "batch": batch, "k": 512}
    for connect in (False, True):
        seconds = timed(
            lambda c=connect: superpixels(on_device, backend="torch", enforce_connectivity=c, **params),
            dev,
            3,
        )
        out[f"images_per_s_connectivity_{connect}"] = batch / seconds
    labels, counts = superpixels(on_device, backend="torch", enforce_connectivity=False, **params)
    n = min(batch, 16)
    numpy_images = images[:n].permute(0, 2, 3, 1).numpy()
    ref_labels, ref_counts = superpixels(numpy_images, backend="numba", **params)
    torch_labels = labels[:n].cpu().numpy()
    out["mean_segments_torch"] = float(counts.float().mean())
    out["mean_segments_numba"] = float(np.mean(ref_counts))
    out["boundary_recall_torch"] = mean_recall(torch_labels, masks[:n])
    out["boundary_recall_numba"] = mean_recall(ref_labels, masks[:n])
    per_image_us = 1e6 / out["images_per_s_connectivity_False"]
    out["floor_us_per_image"] = bandwidth_floor_us(size, size, 10, device)
    out["times_floor"] = per_image_us / out["floor_us_per_image"]
    return out


def table(rows: list[dict]) -> str:
    """A one-line-per-row text table of the run.py figures."""
    keys = ("name", "rc", "test_dice", "images_per_s", "framework_vs_plain", "seconds")
    lines = []
    for row in rows:
        cells = [f"{row[k]:.4f}" if isinstance(row.get(k), float) else str(row.get(k, "-")) for k in keys]
        lines.append(" | ".join(cells))
    return "\n".join(lines)
