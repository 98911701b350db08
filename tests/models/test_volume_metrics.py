"""3D test metrics of volume cases: hand-computed Dice/IoU/HD95 in mm, and the slice-stacking path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datasets.preprocess import to_view
from datasets.volume_cases import VOLUME_BATCH_KEY
from models.metrics import per_image_metrics
from models.volume_eval import predict_case, volume_test_rows


def boxes(shift_z: int = 0) -> np.ndarray:
    volume = np.zeros((8, 8, 6), np.int64)
    volume[2:6, 2:6, 1 + shift_z : 3 + shift_z] = 1
    return volume


def test_hand_computed_dice_iou_and_hd95_in_mm_with_anisotropic_voxels():
    # Two 4x4x2 boxes, one slice apart: 16 of 32 voxels overlap. Every voxel of a 2-thick box is on
    # its surface; half of each surface lies on the other (0 mm), half one slice (3 mm) away, so the
    # pooled and the per-direction (MONAI) 95th percentiles are both 3 mm.
    target, pred = torch.from_numpy(boxes()), torch.from_numpy(boxes(shift_z=1))
    metrics = per_image_metrics(pred, target, 2, with_hd95=True, spacing=(1.0, 1.0, 3.0))
    assert metrics["dice"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["iou"] == pytest.approx(1 / 3, abs=1e-12)
    assert metrics["hd95"] == pytest.approx(3.0, abs=1e-9) and metrics["hd95_empty"] == ""
    # The same shift in-plane (1 mm voxels) is 1 mm.
    in_plane = np.zeros_like(boxes())
    in_plane[3:7, 2:6, 1:3] = 1
    assert per_image_metrics(torch.from_numpy(in_plane), target, 2, with_hd95=True, spacing=(1.0, 1.0, 3.0))[
        "hd95"
    ] == pytest.approx(1.0)


def test_an_empty_side_gives_nan_hd95_flagged_never_a_distance():
    target = torch.from_numpy(boxes())
    metrics = per_image_metrics(torch.zeros_like(target), target, 2, with_hd95=True, spacing=(1.0, 1.0, 3.0))
    assert metrics["dice"] == 0.0 and math.isnan(metrics["hd95"]) and metrics["hd95_empty"] == "pred"


class Identity(torch.nn.Module):
    """A 'network' whose logits are its input: a one-hot input predicts its own labels."""

    device = torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _case_batch(label: np.ndarray, predicted: np.ndarray) -> dict:
    # Slices across axis 2 in the radiological view, one-hot as logits [Z, 2, H, W].
    slices = [
        to_view(np.eye(2, dtype=np.float32)[predicted[:, :, z]], "radiological")
        for z in range(label.shape[2])
    ]
    stack = torch.from_numpy(np.stack(slices)).permute(0, 3, 1, 2).contiguous()
    return {"id": "case", VOLUME_BATCH_KEY: stack, "native_size": tuple(stack.shape[-2:]),
            "label": torch.from_numpy(label), "spacing": (1.0, 1.0, 3.0), "shape": label.shape}  # fmt: skip


def test_slices_are_stacked_back_onto_the_label_grid_and_scored_per_case():
    module = Identity()
    exact = _case_batch(boxes(), boxes())
    np.testing.assert_array_equal(predict_case(module, exact, 2, slice_batch=4), boxes())
    (row,) = volume_test_rows(module, exact, 2, include_background=False, with_hd95=True)
    assert row["dice"] == 1.0 and row["hd95"] == 0.0 and (row["size_x"], row["size_z"]) == (8, 6)
    (row,) = volume_test_rows(module, _case_batch(boxes(), boxes(shift_z=1)), 2, False, True)
    assert row["dice"] == pytest.approx(0.5) and row["hd95"] == pytest.approx(3.0)
    assert row["spacing_mm"] == "1x1x3"
    with pytest.raises(ValueError, match="test case case has no label volume"):
        volume_test_rows(module, {**exact, "label": None}, 2, False, True)
