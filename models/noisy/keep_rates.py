"""Where the keep rates R_c come from when a config does not give them: the noisy view or simulation."""

from __future__ import annotations

from typing import Any

from datasets.image_io import read_mask
from datasets.noise.layout import read_view
from datasets.noise.statistics import estimate_precision_by_simulation


def keep_rates_from_data(
    datamodule: Any, method: str, source: str, num_classes: int, simulation_seed: int
) -> list[float]:
    """Keep rate per class from the ``noisy`` view the data is read from.

    Args:
        datamodule: The set-up DataModule (``layout: noisy``).
        method: The noisy-label method (for the error message).
        source: ``view`` (the precision recorded when the noise was generated: the paper's oracle) or
            ``simulation`` (simulate the recorded noise process on the clean validation masks).
        num_classes: Classes including background.
        simulation_seed: Seed of the simulation.

    Returns:
        ``R_c`` for every class.

    Raises:
        ValueError: When the data is not a ``noisy`` view.
    """
    root = getattr(datamodule, "root", None)
    if root is None or getattr(datamodule, "layout", None) != "noisy":
        raise ValueError(
            f"method {method!r} needs model.keep_rates (R per class) or data from a "
            "'noisy' view (data.layout: noisy) to read or estimate them"
        )
    view = read_view(root)
    if source == "view":
        return [float(r) for r in view["precision"]]
    datamodule.setup("fit")
    masks = [read_mask(r.mask, num_classes) for r in datamodule.splits["val"]]
    max_angle = view.get("max_angle", 30.0)
    if isinstance(max_angle, dict):
        max_angle = {int(k): float(v) for k, v in max_angle.items()}
    return estimate_precision_by_simulation(
        masks, view["alpha"], view["beta"], num_classes, simulation_seed, max_angle
    )
