"""Few-shot (ALPNet) checkpoints for prediction: the module, its slice preprocessing and the support classes.

A few-shot checkpoint segments whatever its support shows. Its data hyper-parameters give the slice
size, the intensity normalisation, the number of support chunks and the label map; prediction reads
them from the checkpoint so that support and query slices are made exactly as at training and test
(:mod:`datasets.fewshot.slices`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets.volumes.label_maps import label_map as resolve_label_map
from engine.predict.checkpoints import build_task_module, data_arguments
from models.task import TaskModule


@dataclass
class FewShotModel:
    """An ALPNet module ready to segment queries from a support.

    Attributes:
        path: The checkpoint file.
        module: The task module (eval mode).
        image_size: Side of the square training slices.
        normalize: ``volume`` or ``global`` z-scoring.
        n_parts: Chunks of an organ's z-range (one support slice per chunk).
        clip_windows: The windows the training data was clipped to (None: none).
        label_map: ``{organ: id}`` of the training data, when it is resolvable.
    """

    path: str
    module: TaskModule
    image_size: int
    normalize: str
    n_parts: int
    clip_windows: dict[str, Any] | None
    label_map: dict[str, int] | None


def is_fewshot_task(cls: type) -> bool:
    """Whether a task class segments queries from a support set (the few-shot family)."""
    return bool(getattr(cls, "segments_from_support", False))


def _resolvable_map(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.endswith(".json") and not Path(value).is_file():
        return None  # a JSON file of the training machine: --label_map gives it here
    return resolve_label_map(value)


def load_fewshot_model(path: str, ckpt: dict[str, Any], cls: type, config: dict[str, Any]) -> FewShotModel:
    """Rebuild an ALPNet checkpoint (already read) with its slice preprocessing.

    Raises:
        ValueError: If the module cannot be rebuilt or the data arguments are missing.
    """
    module = build_task_module(path, ckpt, cls, config)
    data = data_arguments(ckpt, config)
    missing = [k for k in ("image_size", "normalize") if k not in data]
    if missing:
        raise ValueError(
            f"{path}: the checkpoint does not record the few-shot data arguments {missing}; "
            "pass --cfg CONFIG with the data section it was trained with"
        )
    return FewShotModel(
        path=str(path),
        module=module,
        image_size=int(data["image_size"]),
        normalize=str(data["normalize"]),
        n_parts=int(data.get("n_parts", 3)),
        clip_windows=data.get("clip_windows") or None,
        label_map=_resolvable_map(data.get("label_map")),
    )


def check_fewshot_ensemble(models: list[FewShotModel]) -> None:
    """Ensembled few-shot checkpoints must make the same slices.

    Raises:
        ValueError: Naming both checkpoints and the differing setting.
    """
    first = models[0]
    for other in models[1:]:
        for what in ("image_size", "normalize", "n_parts"):
            a, b = getattr(first, what), getattr(other, what)
            if a != b:
                raise ValueError(
                    f"--ckpt {first.path} has {what}={a} but --ckpt {other.path} has {what}={b}; "
                    "ensembled few-shot checkpoints must agree"
                )


def resolve_window(
    flag: str, window: list[float] | None, model: FewShotModel, no_clip: bool
) -> tuple[float, float] | None:
    """The intensity window of a support or query volume.

    Args:
        flag: The flag that sets it (named in the error).
        window: Its value, or None.
        model: The checkpoint (its recorded training windows).
        no_clip: ``--no_clip``: volumes without a window flag keep their raw intensities.

    Raises:
        ValueError: When the training data was clipped, no window is given and ``--no_clip`` is not set
            (raw intensities would silently differ from training).
    """
    if window is not None:
        return float(window[0]), float(window[1])
    if model.clip_windows and not no_clip:
        raise ValueError(
            f"{model.path}: its training data was clipped to {model.clip_windows}; pass {flag} LOW HIGH "
            "(the window that matches this volume's modality), or --no_clip to keep raw intensities"
        )
    return None


def support_classes(
    label: np.ndarray, organs: list[str] | None, names: dict[str, int] | None, shown: str
) -> list[tuple[str, int]]:
    """The ``(name, id)`` classes to segment: the named organs, or every id in the support label.

    Args:
        label: The support label (image or volume), integer ids.
        organs: ``--organs`` names, or None for every non-zero id of ``label``.
        names: ``{organ: id}`` (``--label_map`` or the checkpoint's), needed for ``organs``.
        shown: The support label's path, for messages.

    Raises:
        ValueError: For names without a label map, unknown names, absent organs or an empty support.
    """
    present = sorted(int(v) for v in np.unique(label) if v != 0)
    if organs is None:
        if not present:
            raise ValueError(
                f"--support_label {shown} has no foreground; expected at least one labelled class"
            )
        by_id = {v: k for k, v in (names or {}).items()}
        return [(by_id.get(i, f"class_{i}"), i) for i in present]
    if names is None:
        raise ValueError("--organs needs a label map: pass --label_map NAME|JSON (the checkpoint names none)")
    unknown = [o for o in organs if o not in names]
    if unknown:
        raise ValueError(f"--organs {unknown} are not in the label map {sorted(names)}")
    absent = [o for o in organs if names[o] not in present]
    if absent:
        raise ValueError(
            f"--support_label {shown} does not contain {absent} (ids {[names[o] for o in absent]}); "
            f"it holds ids {present}"
        )
    return [(o, names[o]) for o in organs]
