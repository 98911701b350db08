from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.metric_collection import SegmentationMetrics
from models.metrics import (
    METRIC_FUNCTIONS,
    compute_dice,
    compute_hd95,
    confusion_counts,
    per_image_metrics,
)

NAN = math.nan

# (pred, target, (dice, iou, precision, recall, specificity, accuracy)) for the foreground class
BINARY_CASES = [
    ([[1, 1], [0, 0]], [[1, 0], [1, 0]], (1 / 2, 1 / 3, 1 / 2, 1 / 2, 1 / 2, 1 / 2)),
    ([[1, 1], [1, 0]], [[1, 1], [0, 0]], (4 / 5, 2 / 3, 2 / 3, 1.0, 1 / 2, 3 / 4)),
    ([[1, 1], [1, 1]], [[1, 1], [1, 1]], (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)),  # no negatives: specificity 1
    ([[0, 0], [0, 0]], [[1, 0], [0, 0]], (0.0, 0.0, 0.0, 0.0, 1.0, 3 / 4)),  # missed: not predicted
    ([[1, 0], [0, 0]], [[0, 0], [0, 0]], (0.0, 0.0, 0.0, 0.0, 3 / 4, 3 / 4)),  # false alarm
    ([[0, 0], [0, 0]], [[0, 0], [0, 0]], (NAN, NAN, NAN, NAN, NAN, NAN)),  # empty: ignored
]


def _close(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == pytest.approx(expected)


@pytest.mark.parametrize("pred,target,expected", BINARY_CASES)
def test_binary_case_table(pred, target, expected):
    counts = confusion_counts(torch.tensor(pred), torch.tensor(target), num_classes=2)
    for (name, fn), value in zip(METRIC_FUNCTIONS.items(), expected, strict=True):
        result = fn(*counts)
        assert result.shape == (1, 1)
        assert _close(result.item(), value), name
    metrics = per_image_metrics(torch.tensor(pred), torch.tensor(target), num_classes=2, with_hd95=False)
    for name, value in zip(METRIC_FUNCTIONS, expected, strict=True):
        assert _close(metrics[name], value), name


def test_confusion_counts_values_and_shapes():
    pred = torch.tensor([[[0, 1], [1, 1]], [[2, 2], [0, 0]]])
    target = torch.tensor([[[0, 1], [2, 2]], [[2, 0], [0, 0]]])
    tp, fp, fn, tn = confusion_counts(pred, target, num_classes=3)
    assert tp.tolist() == [[1, 1, 0], [2, 0, 1]]
    assert fp.tolist() == [[0, 2, 0], [0, 0, 1]]
    assert fn.tolist() == [[0, 0, 2], [1, 0, 0]]
    assert tn.tolist() == [[3, 1, 2], [1, 4, 2]]
    # ignore_index drops target pixels from every count
    target[0, 1, 1] = 255
    tp, fp, fn, tn = confusion_counts(pred, target, num_classes=3, ignore_index=255)
    assert (tp + fp + fn + tn).sum(1).tolist() == [3 * 3, 4 * 3]
    assert fp[0].tolist() == [0, 1, 0]


def test_empty_class_and_background_conventions():
    pred = target = torch.zeros(2, 2, dtype=torch.long)
    counts = confusion_counts(pred, target, 2)
    assert math.isnan(compute_dice(*counts).item())  # background excluded: nothing to score
    assert compute_dice(*counts, ignore_empty=False).item() == 1.0
    assert compute_dice(*counts, include_background=True)[0].tolist()[0] == 1.0
    assert math.isnan(per_image_metrics(pred, target, 2)["dice"])
    assert math.isnan(per_image_metrics(pred, target, 2)["hd95"])
    assert per_image_metrics(pred, target, 2, include_background=True)["dice"] == 1.0


def test_multiclass_three_classes():
    target = torch.tensor([[0, 1], [2, 2]])
    pred = torch.tensor([[0, 1], [1, 1]])
    metrics = per_image_metrics(pred, target, num_classes=3, with_hd95=False)
    # class 1: tp 1, fp 2, fn 0, tn 1; class 2: tp 0, fp 0, fn 2, tn 2
    expected = {
        "dice_1": 0.5, "dice_2": 0.0, "iou_1": 1 / 3, "iou_2": 0.0,
        "precision_1": 1 / 3, "precision_2": 0.0, "recall_1": 1.0, "recall_2": 0.0,
        "specificity_1": 1 / 3, "specificity_2": 1.0, "accuracy_1": 0.5, "accuracy_2": 0.5,
    }  # fmt: skip
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["dice"] == pytest.approx(0.25)
    assert metrics["iou"] == pytest.approx(1 / 6)
    assert "dice_0" not in metrics


def test_binary_num_classes_one_and_bad_labels():
    pred = torch.tensor([[1, 1], [1, 0]])
    target = torch.tensor([[1, 1], [0, 0]])
    assert per_image_metrics(pred, target, num_classes=1, with_hd95=False)["dice"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        confusion_counts(torch.tensor([[2]]), torch.tensor([[0]]), num_classes=2)
    with pytest.raises(ValueError, match="same shape"):
        confusion_counts(torch.zeros(2, 2, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long), 2)


# --- HD95 -----------------------------------------------------------------------------------------


def test_hd95_offset_squares_and_lines():
    a = np.zeros((12, 12), dtype=bool)
    b = np.zeros_like(a)
    a[2:4, 2:4] = True
    b[2:4, 6:8] = True  # same 2x2 square shifted 4 pixels right
    assert compute_hd95(a, b) == pytest.approx(4.0)
    assert compute_hd95(a, a) == 0.0
    line_a = np.zeros((12, 12), dtype=bool)
    line_b = np.zeros_like(line_a)
    line_a[2, 1:10] = True
    line_b[5, 1:10] = True  # 3 rows below: every surface distance is 3
    assert compute_hd95(line_a, line_b) == pytest.approx(3.0)
    assert compute_hd95(line_a, line_b, spacing=(2.0, 1.0)) == pytest.approx(6.0)
    assert compute_hd95(line_a, line_b, spacing=(1.0, 5.0)) == pytest.approx(3.0)


def test_hd95_empty_masks_and_errors():
    empty = np.zeros((4, 4), dtype=bool)
    full = np.ones((4, 4), dtype=bool)
    assert math.isnan(compute_hd95(empty, empty))
    assert compute_hd95(empty, full) == math.inf
    assert compute_hd95(full, empty, max_distance=7.5) == 7.5
    with pytest.raises(ValueError, match="spacing"):
        compute_hd95(full, full, spacing=(1.0,))


def test_per_image_hd95_is_nan_and_flagged_when_a_side_is_empty():
    """An empty side gives no distance: NaN with the side named, never a stand-in value (the diagonal)."""
    empty = torch.zeros(4, 4, dtype=torch.long)
    dot = empty.clone()
    dot[1, 1] = 1
    cases = {(empty, dot): "pred", (dot, empty): "target", (empty, empty): "both"}
    for (pred, target), side in cases.items():
        for ignore_empty in (True, False):
            row = per_image_metrics(pred, target, 2, ignore_empty=ignore_empty)
            assert math.isnan(row["hd95"]) and row["hd95_empty"] == side, (side, ignore_empty)
    row = per_image_metrics(dot, dot, 2)
    assert row["hd95"] == 0.0 and row["hd95_empty"] == ""
    # three classes: class 1 matched (HD95 0), class 2 only in the target -> mean over class 1 alone
    target = torch.tensor([[1, 0, 0], [0, 0, 2], [0, 0, 0]])
    pred = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    row = per_image_metrics(pred, target, 3)
    assert row["hd95_1"] == 0.0 and math.isnan(row["hd95_2"]) and row["hd95"] == 0.0
    assert (row["hd95_empty_1"], row["hd95_empty_2"], row["hd95_empty"]) == ("", "pred", "2=pred")


# --- torchmetrics aggregation ---------------------------------------------------------------------


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    preds = torch.tensor([[[1, 1], [0, 0]], [[1, 1], [1, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]])
    target = torch.tensor([[[1, 0], [1, 0]], [[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    return preds, target  # dice per image: 1/2, 4/5, NaN (empty), 0


def test_metric_class_equals_per_image_mean_over_updates():
    preds, target = _images()
    metric = SegmentationMetrics(num_classes=2)
    metric.update(preds[:2], target[:2])
    metric.update(preds[2:], target[2:])
    result = metric.compute()
    assert result["dice"].item() == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)
    per_image = [per_image_metrics(p, t, 2, with_hd95=False) for p, t in zip(preds, target, strict=True)]
    for name in METRIC_FUNCTIONS:
        expected = np.nanmean([m[name] for m in per_image])
        assert result[name].item() == pytest.approx(expected, rel=1e-6), name
    # pooled counts: tp 3, fp 2, fn 2 -> 6 / 10
    assert result["dice_global"].item() == pytest.approx(0.6)


def test_metric_class_multiclass_and_merge_like_ddp():
    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 3, (4, 5, 5), generator=gen)
    target = torch.randint(0, 3, (4, 5, 5), generator=gen)
    whole = SegmentationMetrics(num_classes=3)
    whole.update(preds, target)
    rank0, rank1 = SegmentationMetrics(num_classes=3), SegmentationMetrics(num_classes=3)
    rank0.update(preds[:1], target[:1])
    rank1.update(preds[1:], target[1:])
    rank0.merge_state(rank1)  # the same sum reduction DDP applies
    merged, expected = rank0.compute(), whole.compute()
    assert set(expected) >= {"dice", "dice_global", "dice_1", "dice_2", "iou_1", "iou_2"}
    for key, value in expected.items():
        assert merged[key].item() == pytest.approx(value.item()), key
    per_image = [per_image_metrics(p, t, 3, with_hd95=False) for p, t in zip(preds, target, strict=True)]
    assert expected["dice"].item() == pytest.approx(np.nanmean([m["dice"] for m in per_image]), rel=1e-6)
    assert expected["dice_2"].item() == pytest.approx(np.nanmean([m["dice_2"] for m in per_image]), rel=1e-6)


def test_metric_class_rejects_logits_and_reset_gives_nan():
    metric = SegmentationMetrics(num_classes=2)
    with pytest.raises(ValueError, match="argmax"):
        metric.update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    assert math.isnan(metric.compute()["dice"].item())  # all-background image is not a perfect score


def _ddp_worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        preds, target = _images()
        metric = SegmentationMetrics(num_classes=2)
        metric.update(preds[rank::world_size], target[rank::world_size])
        result = metric.compute()  # syncs the sum states across the two processes
        if rank == 0:
            torch.save({k: v.item() for k, v in result.items()}, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_metric_class_syncs_across_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp

    out_file = tmp_path / "result.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    preds, target = _images()
    single = SegmentationMetrics(num_classes=2)
    single.update(preds, target)
    expected = single.compute()
    synced = torch.load(out_file)
    for key, value in expected.items():
        assert synced[key] == pytest.approx(value.item()), key


def test_summaries_skip_nan_and_count_the_excluded_cases():
    from models.test_rows import summarise_rows

    rows = [
        {"id": "a", "dice": 0.5, "hd95": 2.0, "hd95_empty": ""},
        {"id": "b", "dice": 0.0, "hd95": math.nan, "hd95_empty": "pred"},
        {"id": "c", "dice": 1.0, "hd95": 4.0, "hd95_empty": ""},
        {"id": "d", "dice": math.nan, "hd95": math.nan, "hd95_empty": "both"},
    ]
    summary = summarise_rows(rows)
    assert summary["mean"]["hd95"] == 3.0 and summary["mean"]["dice"] == 0.5
    assert summary["count"] == {"dice": 3, "hd95": 2}
    assert summary["excluded"] == {"dice": 1, "hd95": 2}
    assert summary["flags"] == {"hd95_empty": {"both": 1, "pred": 1}}
    assert "hd95_empty" not in summary["mean"]
