"""Refinement: flips only confident disagreeing superpixels; label sets are written atomically."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from datasets.image_io import read_mask, write_png_atomic
from models.noisy import refinement
from models.noisy.refinement import LossGapTracker, apply_flips, superpixel_flips, write_label_set_atomic


def _writer(path, labels):
    write_png_atomic(path, labels.astype(np.uint8))


def test_flips_only_above_threshold():
    sp = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    labels = torch.zeros(2, 4, dtype=torch.long)
    labels[1, 2:] = 1  # superpixel 3 labelled 1
    fg = torch.tensor([[0.1, 0.1, 0.95, 0.85], [0.7, 0.7, 0.05, 0.05]])  # sp means: .1, .9, .7, .05
    probs = torch.stack([1 - fg, fg])
    flips = superpixel_flips(probs, labels, sp, threshold=0.8)
    # sp1 (0.9 > 0.8, disagrees) and sp3 (bg 0.95, disagrees) flip; sp2 (0.7) stays; sp0 agrees.
    assert flips.tolist() == [-1, 1, -1, 0]
    refined = apply_flips(labels, sp, flips)
    assert refined.tolist() == [[0, 0, 1, 1], [0, 0, 0, 0]]


def test_loss_gap_tracker_patience():
    tracker = LossGapTracker(patience=2)
    assert [tracker.update(g) for g in (0.1, 0.3, 0.2, 0.25, 0.4, 0.1, 0.1)] == [
        False,
        False,
        False,
        True,
        False,
        False,
        True,
    ]


def test_write_label_set_complete_and_failure_keeps_previous(tmp_path, monkeypatch):
    out = tmp_path / "refined" / "round_01"
    first = {"a": np.zeros((4, 4), np.int64), "b": np.ones((4, 4), np.int64)}
    write_label_set_atomic(out, first, {"round": 1}, _writer)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "manifest.json"]
    assert json.loads((out / "manifest.json").read_text()) == {"round": 1}

    calls = {"n": 0}

    def failing(path, labels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        _writer(path, labels)

    second = {"a": np.full((4, 4), 2, np.int64), "b": np.full((4, 4), 2, np.int64)}
    with pytest.raises(OSError, match="disk full"):
        write_label_set_atomic(out, second, {"round": 2}, failing)
    assert read_mask(out / "a.png", 3).max() == 0  # previous set intact
    assert json.loads((out / "manifest.json").read_text()) == {"round": 1}
    assert [p.name for p in out.parent.iterdir()] == ["round_01"]  # no temp left behind

    real_replace = os.replace
    failed = []

    def failing_swap(src, dst):
        # The new set's rename into place fails once (after the old set was moved aside).
        if str(dst) == str(out) and not failed:
            failed.append(src)
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(refinement.os, "replace", failing_swap)
    with pytest.raises(OSError, match="rename failed"):
        write_label_set_atomic(out, second, {"round": 2}, _writer)
    monkeypatch.undo()
    assert json.loads((out / "manifest.json").read_text()) == {"round": 1}
    write_label_set_atomic(out, second, {"round": 2}, _writer)
    assert read_mask(out / "b.png", 3).min() == 2
