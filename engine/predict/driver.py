"""The prediction run: load checkpoints, walk the inputs with a progress bar, write outputs and the CSV.

A failing input (unreadable file, channels the model cannot take, an output that exists without
``--overwrite``) is reported with its path and skipped; after the rest is done, ``predictions.csv`` is
written and the run fails with one line listing every failure (exit code 2 from ``run.py``).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core.checkpoint_io import trust_checkpoints
from datasets.image_io import write_png_atomic
from datasets.preflight import check_records
from datasets.records import SampleRecord
from engine.predict.checkpoints import check_ensemble, load_prediction_model, read_task_checkpoint
from engine.predict.fewshot import FewShotRun
from engine.predict.fewshot_driver import predict_fewshot
from engine.predict.fewshot_model import check_fewshot_ensemble, is_fewshot_task, load_fewshot_model
from engine.predict.inputs import InputItem, discover_inputs, predict_each, read_image_input
from engine.predict.options import PredictOptions
from engine.predict.runner import Predictor, resolve_device
from engine.predict.volumes import predict_volume
from engine.predict.writers import (
    CSV_NAME,
    existing_outputs,
    mask_values,
    output_paths,
    output_row,
    write_csv,
    write_overlay,
    write_probs_npz,
)

log = logging.getLogger(__name__)


def build_predictor(options: PredictOptions, read: list[tuple] | None = None) -> Predictor:
    """Load the checkpoints (checked to agree) into a :class:`Predictor` on the chosen device.

    Args:
        options: The prediction flags.
        read: :func:`read_task_checkpoint`'s result per ``--ckpt`` when they were read already.
    """
    read = read or [None] * len(options.ckpts)
    models = [
        load_prediction_model(path, options.config, options.noisy_net, done)
        for path, done in zip(options.ckpts, read, strict=True)
    ]
    check_ensemble(models)
    for model in models:
        overrides = {"window": options.window, "slice_axis": options.slice_axis, "view": options.view}
        for key, value in overrides.items():
            if value is not None:
                setattr(model.inference, key, value)
    return Predictor(
        models,
        tta=options.tta,
        mode=options.mode,
        overlap=options.overlap,
        batch_size=options.batch_size,
        device=resolve_device(options.device),
        amp=options.amp,
    )


def _predict_images(
    items: list[InputItem], predictor: Predictor, options: PredictOptions, out_dir: Path, bar: tqdm
) -> tuple[list[dict[str, Any]], list[str]]:
    """Read, predict (in batches) and write 2D inputs; returns CSV rows and failure lines."""
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    pending: list[tuple[InputItem, Any, np.ndarray, float]] = []

    def flush() -> None:
        if not pending:
            return
        start = time.perf_counter()
        log_probs = predictor.predict([image for _, _, image, _ in pending])
        share = (time.perf_counter() - start) / len(pending)
        for (item, paths, image, seconds), lp in zip(pending, log_probs, strict=True):
            begin = time.perf_counter()
            labels = lp.argmax(dim=0).numpy()
            write_png_atomic(paths.mask, mask_values(labels, predictor.num_classes, options.palette))
            if paths.probs is not None:
                write_probs_npz(paths.probs, lp.exp().numpy())
            overlays = []
            if paths.overlay_stem is not None:
                overlays.append(write_overlay(paths.overlay_stem.with_suffix(".png"), image, labels))
            row = output_row(item, paths, labels, overlays, labels.shape[:2])
            row["seconds"] = round(seconds + share + time.perf_counter() - begin, 6)
            rows.append(row)
        pending.clear()

    unreadable = _preflight(items, predictor, options.progress)
    for item in items:
        start = time.perf_counter()
        paths = output_paths(out_dir, item.name, False, options.save_probs, options.overlay)
        try:
            _refuse_existing(paths, options.overwrite)
            if item.path in unreadable:
                raise ValueError(unreadable[item.path])
            image = read_image_input(item, predictor.in_channels)
        except (ValueError, FileNotFoundError) as err:
            failures.append(f"{item.path}: {err}")
            log.error("skipped %s: %s", item.path, err)
            bar.update(1)
            continue
        pending.append((item, paths, image, time.perf_counter() - start))
        if len(pending) >= options.batch_size:
            flush()
        bar.update(1)
    flush()
    return rows, failures


def _preflight(items: list[InputItem], predictor: Predictor, progress: bool) -> dict[Path, str]:
    """The training pre-flight's check of every 2D input, in parallel before any inference.

    Returns:
        ``{path: what is wrong}`` of the inputs that cannot be read (they are skipped and listed).
    """
    records = [SampleRecord(item.name, Path(item.path), None) for item in items]
    found = check_records(records, predictor.num_classes, predictor.in_channels, progress=progress)
    return {failure.path: failure.message for failure in found}


def _refuse_existing(paths: Any, overwrite: bool) -> None:
    found = [] if overwrite else existing_outputs(paths)
    if found:
        raise ValueError(f"output {found[0]} exists; pass --overwrite to replace it")


def _predict_volumes(
    items: list[InputItem], predictor: Predictor, options: PredictOptions, out_dir: Path, bar: tqdm
) -> tuple[list[dict[str, Any]], list[str]]:
    """Predict and write volumes one by one; returns CSV rows and failure lines."""

    def one(item: InputItem) -> dict[str, Any]:
        paths = output_paths(out_dir, item.name, True, options.save_probs, options.overlay)
        _refuse_existing(paths, options.overwrite)
        return predict_volume(item, paths, predictor, options)

    return predict_each(items, one, bar)


def _predict_all(
    items: list[InputItem], predictor: Predictor, options: PredictOptions, out_dir: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """Images in batches, then volumes one by one; returns CSV rows and failure lines."""
    images = [i for i in items if i.kind == "image"]
    volumes = [i for i in items if i.kind != "image"]
    with tqdm(total=len(items), unit="img", desc="predict", disable=not options.progress) as bar:
        rows, failures = _predict_images(images, predictor, options, out_dir, bar)
        more_rows, more_failures = _predict_volumes(volumes, predictor, options, out_dir, bar)
    return rows + more_rows, failures + more_failures


def _fewshot_run(options: PredictOptions, read: list[tuple], fewshot: list[bool]) -> FewShotRun:
    """The few-shot checkpoints (all of them few-shot, agreeing) with the inference flags."""
    if not all(fewshot):
        other = next(path for path, is_fs in zip(options.ckpts, fewshot, strict=True) if not is_fs)
        first = next(path for path, is_fs in zip(options.ckpts, fewshot, strict=True) if is_fs)
        raise ValueError(
            f"--ckpt {first} is a few-shot checkpoint and --ckpt {other} is not; ensemble one kind"
        )
    if options.noisy_net is not None or options.mode is not None:
        raise ValueError("--noisy_net and --mode apply to segmentation checkpoints, not few-shot ones")
    models = [
        load_fewshot_model(path, ckpt, cls, options.config)
        for path, (ckpt, _, cls) in zip(options.ckpts, read, strict=True)
    ]
    check_fewshot_ensemble(models)
    return FewShotRun(models, options.tta, options.batch_size, resolve_device(options.device), options.amp)


def _refuse_fewshot_flags(options: PredictOptions) -> None:
    names = ("support", "support_label", "organs", "label_map", "query_range", "support_window")
    given = [f"--{name}" for name in names if getattr(options, name)]
    if given or options.no_clip:
        raise ValueError(
            f"{' '.join(given) or '--no_clip'} apply to few-shot checkpoints only ({options.ckpts[0]} is not)"
        )


def run_prediction(options: PredictOptions) -> dict[str, Any]:
    """Predict every input of ``options`` and write the outputs and ``predictions.csv``.

    Returns:
        ``{"run_dir": output folder, "predictions": CSV path, "predicted": count}``.

    Raises:
        FileNotFoundError: Missing checkpoint or input.
        ValueError: Bad checkpoint/option (before any output), or, after finishing the others, the
            list of inputs that failed.
    """
    started = time.perf_counter()
    trust_checkpoints(options.trust_checkpoint)
    read = [read_task_checkpoint(path, options.config) for path in options.ckpts]
    fewshot = [is_fewshot_task(cls) for _, _, cls in read]
    if any(fewshot):
        run = _fewshot_run(options, read, fewshot)
    else:
        _refuse_fewshot_flags(options)
        predictor = build_predictor(options, read)
        if options.palette == "binary":
            mask_values(np.zeros((1, 1), np.int64), predictor.num_classes, "binary")
    items = discover_inputs(options.input)
    out_dir = Path(options.output)
    csv_path = out_dir / CSV_NAME
    if csv_path.exists() and not options.overwrite:
        raise ValueError(f"{csv_path} exists; pass --overwrite or choose another --output")
    if any(fewshot):
        rows, failures = predict_fewshot(items, run, options)
    else:
        rows, failures = _predict_all(items, predictor, options, out_dir)
    write_csv(out_dir, rows)
    seconds = time.perf_counter() - started
    print(
        f"predicted {len(rows)} of {len(items)} inputs into {out_dir} in {seconds:.1f} s "
        f"({len(rows) / max(seconds, 1e-9):.1f} inputs/s); list: {csv_path}",
        file=sys.stderr,
    )
    if failures:
        raise ValueError(
            f"{len(failures)} of {len(items)} inputs failed (the others are in {csv_path}): "
            + "; ".join(failures)
        )
    return {"run_dir": str(out_dir), "predictions": str(csv_path), "predicted": len(rows)}
