"""The ``noisy`` layout: a dataset whose training masks were replaced by simulated noisy ones.

Layout functions take only ``(root, split)``, so the choice of noisy label set cannot be a layout
option. Instead ``python -m datasets.noise.cli`` writes a small *view folder* inside the dataset root,
``<root>/noisy_<tag>/noisy_dataset.json``, and the DataModule is pointed at it::

    data:
      init_args:
        root: datasets/sample/nuclei/noisy_a50_b70_s0
        layout: noisy

The view lists the source root (relative to the view), the source layout and, for the corrupted
split, the noisy mask of every id. Images and the other splits come unchanged from the source layout,
so validation and test stay clean.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.registry import unknown_name_message
from datasets.layouts import LAYOUTS, find_samples, register_layout
from datasets.records import SampleRecord

VIEW_FILENAME = "noisy_dataset.json"


def read_view(root: str | Path) -> dict[str, Any]:
    """Read and check the ``noisy_dataset.json`` of a view folder.

    Raises:
        FileNotFoundError: If the file is missing (the message says how to make it).
        ValueError: If a required key is missing.
    """
    path = Path(root) / VIEW_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: layout 'noisy' expects a view folder written by "
            "`python -m datasets.noise.cli --root <dataset> --layout <layout> --alpha A --beta B --seed S`"
        )
    view = json.loads(path.read_text())
    missing = [k for k in ("source_root", "source_layout", "split", "masks") if k not in view]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    return view


def source_root(root: str | Path, view: dict[str, Any]) -> Path:
    """The clean dataset root a view refers to."""
    return (Path(root) / view["source_root"]).resolve()


@register_layout(
    "noisy",
    structure=(
        "  <view>/noisy_dataset.json written by `python -m datasets.noise.cli` (inside the clean root);\n"
        "  images and clean val/test come from the source layout, the noisy split's masks from the view"
    ),
)
def noisy_layout(root: Path, split: str) -> list[SampleRecord]:
    """Records of the source dataset with the noisy split's masks swapped for the simulated ones."""
    view = read_view(root)
    if view["source_layout"] not in LAYOUTS:
        raise ValueError(
            f"{root / VIEW_FILENAME}: source_layout: "
            + unknown_name_message("layout", view["source_layout"], LAYOUTS.names())
        )
    records = find_samples(view["source_layout"], source_root(root, view), split)
    if split != view["split"]:
        return records
    masks: dict[str, str] = view["masks"]
    missing = [r.id for r in records if r.id not in masks]
    if missing:
        raise ValueError(f"{root / VIEW_FILENAME} has no noisy mask for ids {missing[:5]} (split {split})")
    out = []
    for record in records:
        path = (Path(root) / masks[record.id]).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"noisy mask {path} of '{record.id}' listed in {root / VIEW_FILENAME}")
        out.append(replace(record, mask=path))
    return out
