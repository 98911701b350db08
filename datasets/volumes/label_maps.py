"""Named label maps (``{class name: id}``) of label volumes, and remapping one map's ids onto another's.

Every map is registered in :data:`LABEL_MAPS` (one :class:`core.registry.Registry`): the public
datasets' own ids (``chaos``, ``sabs``, ``acdc``), the framework's abdominal ids (``sample``: the ids
of ``datasets/sample/labels.json``) and TotalSegmentator's v2 ids (``totalsegmentator`` for the
``total`` task, ``totalsegmentator_mr`` for ``total_mr``; from its ``map_to_binary.py``). The
TotalSegmentator maps hold only the abdominal and large organs listed below, not all 117 classes:
a label volume's ids that are not in the map become background and are counted (see
:func:`remap_labels`), never kept under a wrong name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.registry import Registry, UnknownNameError, unknown_name_message

logger = logging.getLogger(__name__)

LABEL_MAPS: Registry[dict[str, int]] = Registry("label map")
LABEL_MAPS.register("chaos", {"liver": 1, "kidney_right": 2, "kidney_left": 3, "spleen": 4})
LABEL_MAPS.register("sabs", {
    "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "esophagus": 5, "liver": 6,
    "stomach": 7, "aorta": 8, "ivc": 9, "portal_splenic_vein": 10, "pancreas": 11, "adrenal_right": 12,
    "adrenal_left": 13,
})  # fmt: skip
LABEL_MAPS.register("acdc", {"rv": 1, "myo": 2, "lv": 3})
# The framework's abdominal ids: datasets/sample/labels.json and the sample volumes' manifest.
LABEL_MAPS.register("sample", {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4})
# TotalSegmentator v2, task "total" (CT): class_map["total"] of totalsegmentator/map_to_binary.py.
LABEL_MAPS.register("totalsegmentator", {
    "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
    "pancreas": 7, "adrenal_gland_right": 8, "adrenal_gland_left": 9, "esophagus": 15, "small_bowel": 18,
    "duodenum": 19, "colon": 20, "urinary_bladder": 21, "heart": 51, "aorta": 52,
    "inferior_vena_cava": 63, "portal_vein_and_splenic_vein": 64,
})  # fmt: skip
# TotalSegmentator v2, task "total_mr": class_map["total_mr"] (the first nine ids equal "total"'s).
LABEL_MAPS.register("totalsegmentator_mr", {
    "spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
    "pancreas": 7, "adrenal_gland_right": 8, "adrenal_gland_left": 9, "esophagus": 12, "small_bowel": 13,
    "duodenum": 14, "colon": 15, "urinary_bladder": 16, "heart": 22, "aorta": 23, "inferior_vena_cava": 24,
    "portal_vein_and_splenic_vein": 25,
})  # fmt: skip


def checked_map(names: Mapping[str, object], where: str) -> dict[str, int]:
    """``names`` as ``{str: int}``, every id a positive integer used once.

    Raises:
        ValueError: Naming ``where`` and the offending entry.
    """
    out: dict[str, int] = {}
    for name, cid in names.items():
        if isinstance(cid, bool) or not isinstance(cid, int | np.integer) or int(cid) < 1:
            raise ValueError(
                f"{where}: class {name!r} has id {cid!r}; expected an integer >= 1 (0 is background)"
            )
        out[str(name)] = int(cid)
    clashes = sorted({c for c in out.values() if list(out.values()).count(c) > 1})
    if clashes:
        raise ValueError(f"{where}: ids {clashes} are used by more than one class in {out}")
    return out


def label_map(name_or_path: str | Mapping[str, int]) -> dict[str, int]:
    """A label map from a registered name, inline JSON (``'{"liver": 5}'``), a JSON file or a dict.

    Raises:
        UnknownNameError: For a name that is neither registered, inline JSON nor an existing file.
        ValueError: For JSON that is not ``{name: positive id}``.
    """
    if isinstance(name_or_path, Mapping):
        return checked_map(name_or_path, "label map")
    text = str(name_or_path)
    if text in LABEL_MAPS:
        return dict(LABEL_MAPS.get(text))
    if text.lstrip().startswith("{"):
        source, raw = "inline JSON label map", text
    elif Path(text).is_file():
        source, raw = f"label map file {text}", Path(text).read_text()
    else:
        message = unknown_name_message("label map", text, LABEL_MAPS.names())
        raise UnknownNameError(f"{message} (nor inline JSON {{name: id}}, nor an existing JSON file)")
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err}); expected {{name: id}}") from err
    if not isinstance(parsed, dict):
        raise ValueError(f"{source}: expected a JSON object {{name: id}}, got {type(parsed).__name__}")
    return checked_map(parsed, source)


def integer_labels(array: np.ndarray, where: str) -> np.ndarray:
    """Label voxels as int64, refusing fractional or negative values (a resampled or intensity file).

    Raises:
        ValueError: Naming ``where`` and up to five offending values.
    """
    values = np.asarray(array)
    if values.dtype.kind == "f":
        fractional = np.unique(values[values != np.rint(values)])
        if fractional.size:
            raise ValueError(
                f"{where}: label values {fractional[:5].tolist()} are not integers; expected a label "
                "volume (class ids), not an intensity image"
            )
    out = np.rint(values).astype(np.int64)
    if (out < 0).any():
        raise ValueError(
            f"{where}: negative label values {np.unique(out[out < 0])[:5].tolist()}; expected ids >= 0"
        )
    return out


def check_label_range(array: np.ndarray, names: Mapping[str, int], where: str) -> None:
    """Every label voxel is background or one of the map's ids.

    Raises:
        ValueError: Naming ``where``, the ids outside the map and the map.
    """
    outside = sorted(set(np.unique(array).tolist()) - {0, *names.values()})
    if outside:
        raise ValueError(
            f"{where}: label ids {outside[:10]} are outside the label map {dict(names)} "
            "(expected 0 or one of its ids)"
        )


def remap_labels(
    array: np.ndarray, source: Mapping[str, int], target: Mapping[str, int], where: str
) -> tuple[np.ndarray, dict[str, int], dict[int, int]]:
    """Relabel ``array`` from the ``source`` map's ids to the ``target`` map's ids, by class name.

    A voxel whose id is not in ``source``, or whose class is not in ``target``, becomes background;
    those voxels are counted per source id and logged as a warning.

    Args:
        array: Integer label volume in ``source`` ids.
        source: ``{name: id}`` of ``array``.
        target: ``{name: id}`` wanted.
        where: The label file, for messages.

    Returns:
        ``(relabelled int16 array, the classes kept {name: target id}, {source id: voxels set to 0})``.

    Raises:
        ValueError: When no class of ``source`` is in ``target``.
    """
    kept = {name: target[name] for name in source if name in target}
    if not kept:
        raise ValueError(
            f"{where}: no class of the source label map {dict(source)} is in the target map {dict(target)}; "
            "expected shared class names (target map 'source' keeps the source ids)"
        )
    lookup_size = max([int(array.max(initial=0)), *source.values()]) + 1
    lookup = np.zeros(lookup_size, dtype=np.int16)
    for name, target_id in kept.items():
        lookup[source[name]] = target_id
    ids, counts = np.unique(array, return_counts=True)
    dropped = {int(i): int(n) for i, n in zip(ids, counts, strict=True) if i != 0 and lookup[i] == 0}
    if dropped:
        by_id = {v: k for k, v in source.items()}
        listed = ", ".join(f"{i} ({by_id.get(i, 'not in the source map')}): {n}" for i, n in dropped.items())
        logger.warning("%s: voxels set to background, by source id: %s", where, listed)
    return lookup[array], kept, dropped
