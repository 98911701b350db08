"""Few-shot prediction: segment query images or volumes from one support image or volume (ALPNet).

Support and query are made into training slices by the code training and testing use
(:mod:`datasets.fewshot.slices`): the window (``--support_window``/``--window``), the checkpoint's
z-scoring (per volume, or over support and query together for ``global``), axial slices padded square
and resized to the checkpoint's size. Each class is segmented on its own, as in the test protocol:

* Volumes: the support label's z-range of the class is split into the checkpoint's ``n_parts`` chunks
  and the chunk centres are the support slices. The test protocol splits the QUERY's ground-truth
  range the same way; prediction has no ground truth, so the query range is given
  (``--query_range ORGAN=Z0:Z1``, ``ORGAN=all``) or, by default, is the support's range at the same
  relative position of the query's axial extent (scans of similar field of view). Slices outside it
  are background.
* 2D images: the support image is the support slice of every query.

The foreground probabilities of the classes are resized back to the input's grid; a pixel takes the
class of highest probability when that probability exceeds 0.5, else background. Flip TTA flips the
whole episode; ensembles average the probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from datasets.fewshot.episodes import to_three_channels
from datasets.fewshot.protocol import class_slices, query_plan, support_slices
from datasets.fewshot.slices import (
    image_slices,
    normalise_volumes,
    ras_to_stack,
    square_resize,
    square_unresize,
)
from engine.predict.fewshot_model import FewShotModel

# Episode flips of the TTA variants (() = the episode itself).
EPISODE_FLIPS: dict[str, list[tuple[int, ...]]] = {"none": [()], "flip": [(), (-1,), (-2,)]}
QueryRanges = dict[str, tuple[int, int] | None]  # None: every slice of the query


@dataclass
class FewShotRun:
    """Checkpoints and inference settings of one few-shot prediction.

    Attributes:
        models: Agreeing checkpoints (see ``check_fewshot_ensemble``), probabilities averaged.
        tta: ``none`` or ``flip``.
        batch_size: Episodes per forward pass.
        device: Torch device.
        amp: Autocast (float16 on CUDA, bfloat16 on CPU).
    """

    models: list[FewShotModel]
    tta: str = "none"
    batch_size: int = 4
    device: torch.device = torch.device("cpu")
    amp: bool = False

    def __post_init__(self) -> None:
        if self.tta not in EPISODE_FLIPS:
            raise ValueError(f"unknown tta {self.tta!r}; expected one of {sorted(EPISODE_FLIPS)}")
        for model in self.models:
            model.module.to(self.device).eval()

    @property
    def size(self) -> int:
        """Side of the training slices."""
        return self.models[0].image_size

    @property
    def normalize(self) -> str:
        """The checkpoints' z-scoring."""
        return self.models[0].normalize

    @property
    def n_parts(self) -> int:
        """Chunks of a class's support range."""
        return self.models[0].n_parts


@torch.no_grad()
def _episode_probabilities(run: FewShotRun, support: Tensor, mask: Tensor, query: Tensor) -> Tensor:
    """Mean foreground probability ``[B, H, W]`` over checkpoints and episode flips."""
    dtype = torch.float16 if run.device.type == "cuda" else torch.bfloat16
    total = torch.zeros(query.shape[0], *query.shape[-2:], device=run.device)
    with torch.autocast(run.device.type, dtype=dtype, enabled=run.amp):
        for model in run.models:
            for dims in EPISODE_FLIPS[run.tta]:
                s, m, q = (t.flip(dims) if dims else t for t in (support, mask, query))
                fg = model.module(s, m, q).float().softmax(dim=1)[:, 1]
                total += fg.flip(dims) if dims else fg
    return total / (len(run.models) * len(EPISODE_FLIPS[run.tta]))


def slice_probabilities(
    run: FewShotRun,
    support: np.ndarray,
    support_mask: np.ndarray,
    query: np.ndarray,
    plan: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Foreground probability of each planned query slice, segmented with its support slice.

    Args:
        run: Checkpoints and settings.
        support: Support training slices ``[Zs, S, S]`` (float32).
        support_mask: Binary support mask of the class ``[Zs, S, S]``.
        query: Query training slices ``[Zq, S, S]``.
        plan: ``(query_z, support_z)`` pairs (:func:`datasets.fewshot.protocol.query_plan`).

    Returns:
        float32 ``[len(plan), S, S]``.
    """
    out = []
    for start in range(0, len(plan), run.batch_size):
        chunk = plan[start : start + run.batch_size]
        s = torch.stack([to_three_channels(support[sz]) for _, sz in chunk]).to(run.device)
        m = torch.stack([torch.from_numpy(support_mask[sz].astype(np.int64)) for _, sz in chunk]).to(
            run.device
        )
        q = torch.stack([to_three_channels(query[qz]) for qz, _ in chunk]).to(run.device)
        out.append(_episode_probabilities(run, s, m, q).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def relative_range(support_range: tuple[int, int], support_depth: int, query_depth: int) -> tuple[int, int]:
    """The support's class range at the same relative position of a query of ``query_depth`` slices.

    Example: slices 10..19 of a 40-slice support map to 5..9 of a 20-slice query.
    """
    z0, z1 = support_range
    q0 = min(query_depth - 1, math.floor(z0 * query_depth / support_depth))
    q1 = max(q0, min(query_depth - 1, math.ceil((z1 + 1) * query_depth / support_depth) - 1))
    return q0, q1


def query_range(
    ranges: QueryRanges, name: str, support_range: tuple[int, int], zs: int, zq: int
) -> tuple[int, int]:
    """The query slices of class ``name``: ``--query_range``'s, else :func:`relative_range`.

    Raises:
        ValueError: For a given range outside the query's ``zq`` slices.
    """
    if name not in ranges:
        return relative_range(support_range, zs, zq)
    given = ranges[name]
    if given is None:
        return 0, zq - 1
    if not 0 <= given[0] <= given[1] < zq:
        raise ValueError(
            f"--query_range {name}={given[0]}:{given[1]} is outside the query's slices 0..{zq - 1}"
        )
    return given


def best_class_labels(
    probabilities: Sequence[tuple[int, np.ndarray]], shape: tuple[int, ...], dtype: type
) -> np.ndarray:
    """Per pixel, the id of the most probable class when its probability exceeds 0.5, else 0.

    Args:
        probabilities: ``(class id, probability array of ``shape``)`` per class; ties go to the first.
        shape: The arrays' shape.
        dtype: Label type.
    """
    best = np.full(shape, 0.5, np.float32)
    labels = np.zeros(shape, dtype)
    for class_id, prob in probabilities:
        take = prob > best
        best[take] = prob[take]
        labels[take] = class_id
    return labels


def segment_volume(
    run: FewShotRun,
    support: tuple[np.ndarray, np.ndarray, tuple[float, float] | None],
    query: tuple[np.ndarray, tuple[float, float] | None],
    classes: Sequence[tuple[str, int]],
    ranges: QueryRanges,
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Class probabilities of a query volume on its own slice grid.

    Args:
        run: Checkpoints and settings.
        support: ``(RAS image, RAS integer label, window)`` of the support volume.
        query: ``(RAS image, window)`` of the query volume.
        classes: ``(name, id)`` to segment.
        ranges: ``--query_range`` per class name.

    Returns:
        The query's normalised slices ``[Zq, Y, X]`` at native resolution and, per class, its id and
        foreground probability ``[Zq, Y, X]``.
    """
    s_norm, q_norm = normalise_volumes([support[0], query[0]], [support[2], query[1]], run.normalize)
    s_slices, q_slices = image_slices(s_norm, run.size), image_slices(q_norm, run.size)
    s_labels = square_resize(ras_to_stack(support[1]), run.size, order=0, fill=0)
    zs, zq = s_slices.shape[0], q_slices.shape[0]
    native = ras_to_stack(q_norm)
    out = []
    for name, class_id in classes:
        s_range = class_slices(s_labels, class_id, f"support label ({name}, id {class_id})")
        plan = query_plan(query_range(ranges, name, s_range, zs, zq), support_slices(s_range, run.n_parts))
        probs = np.zeros((zq, run.size, run.size), np.float32)
        probs[[qz for qz, _ in plan]] = slice_probabilities(
            run, s_slices, s_labels == class_id, q_slices, plan
        )
        out.append((class_id, square_unresize(probs, native.shape[1:], order=1)))
    return np.ascontiguousarray(native), out


def segment_image(
    run: FewShotRun,
    support: tuple[np.ndarray, np.ndarray],
    query: np.ndarray,
    classes: Sequence[tuple[str, int]],
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Class probabilities of a grey query image ``[H, W]`` from a support image and label.

    Returns:
        The normalised query ``[H, W]`` and, per class, its id and foreground probability ``[H, W]``.
    """
    s_norm, q_norm = normalise_volumes([support[0], query], [None, None], run.normalize)
    s_slice = square_resize(s_norm[None], run.size, order=1, fill=float(s_norm.min())).astype(np.float32)
    q_slice = square_resize(q_norm[None], run.size, order=1, fill=float(q_norm.min())).astype(np.float32)
    s_label = square_resize(support[1][None], run.size, order=0, fill=0)
    out = []
    for _, class_id in classes:
        probs = slice_probabilities(run, s_slice, s_label == class_id, q_slice, [(0, 0)])
        out.append((class_id, square_unresize(probs, query.shape, order=1)[0]))
    return q_norm, out
