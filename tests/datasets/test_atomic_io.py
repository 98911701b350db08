"""Atomic writes: the final file is complete or untouched, and no temporary file is left behind."""

from __future__ import annotations

import csv
import json
import os
import stat

import nibabel as nib
import numpy as np
import pytest

from datasets import atomic_io
from datasets.atomic_io import atomic_path, atomic_write_bytes, atomic_write_csv, atomic_write_json
from datasets.image_io import write_png_atomic
from datasets.volumes.io import write_nifti


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_creates_parents_and_leaves_only_the_file(tmp_path):
    target = tmp_path / "a" / "b" / "map.bin"
    assert atomic_write_bytes(target, b"\x00\x01\x02") == target
    assert target.read_bytes() == b"\x00\x01\x02"
    assert _names(target.parent) == ["map.bin"]


def test_exception_in_block_keeps_previous_file_and_removes_temp(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("old complete content")
    with pytest.raises(RuntimeError, match="crash mid-write"), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old complete content"
    assert _names(tmp_path) == ["results.csv"]


def test_failed_rename_keeps_previous_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    target.write_text("{}")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"new": 1})
    monkeypatch.undo()
    assert target.read_text() == "{}"
    assert _names(tmp_path) == ["manifest.json"]


def test_temp_name_is_hidden_and_keeps_the_suffix_only_when_asked(tmp_path):
    with atomic_path(tmp_path / "a.spx") as tmp:
        # a temp left by a killed process must not look like a map, mask or image to a folder listing
        assert tmp.name.startswith(".") and not tmp.name.endswith(".spx")
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "scan.nii.gz", keep_suffix=True) as tmp:
        assert tmp.name.startswith(".") and tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "grid.png", keep_suffix=True) as tmp:
        assert tmp.suffix == ".png"
        tmp.write_bytes(b"x")


def test_permissions_follow_the_umask_not_mkstemp(tmp_path):
    umask = os.umask(0o022)
    try:
        target = atomic_write_bytes(tmp_path / "best_policy.yaml", b"aug_k: 1\n")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_json_that_cannot_be_encoded_writes_nothing(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text('{"dice": 0.5}')
    with pytest.raises(TypeError):
        atomic_write_json(target, {"ids": {1, 2}})
    assert json.loads(target.read_text()) == {"dice": 0.5}
    assert _names(tmp_path) == ["summary.json"]


def test_csv_round_trip_and_unknown_column_keeps_previous(tmp_path):
    target = tmp_path / "table.csv"
    rows = [{"seed": 0, "dice": 0.25}, {"seed": 1, "dice": 0.5}]
    atomic_write_csv(target, rows, ["seed", "dice"])
    with target.open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"seed": "0", "dice": "0.25"}, {"seed": "1", "dice": "0.5"}]
    with pytest.raises(ValueError, match="extra"):
        atomic_write_csv(target, [{"seed": 2, "extra": 1}], ["seed", "dice"])
    assert target.read_text().splitlines()[-1] == "1,0.5"
    assert _names(tmp_path) == ["table.csv"]


def test_png_and_nifti_writers_leave_only_the_final_files(tmp_path):
    png = tmp_path / "mask.png"
    write_png_atomic(png, np.eye(4, dtype=np.uint8) * 255)
    with pytest.raises(ValueError, match="dtype"):
        write_png_atomic(png, np.eye(4, dtype=np.float32))
    nii = write_nifti(tmp_path / "scan.nii.gz", np.zeros((2, 3, 4), np.int16), np.eye(4))
    assert nib.load(nii).shape == (2, 3, 4)
    assert _names(tmp_path) == ["mask.png", "scan.nii.gz"]
