"""Data pre-flight: bad files listed in one error, the file cache, --skip_checks, run.py end to end."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import datasets.preflight as preflight
from datasets.datamodule import SegmentationDataModule
from datasets.preflight import PreflightCache, check_records, preflight_datamodule
from datasets.records import SampleRecord
from tests.datasets.conftest import binary_mask, write_image, write_pair
from tests.engine.conftest import tiny_args

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "datasets" / "sample" / "nuclei"


def _record(image: Path, mask: Path | None) -> SampleRecord:
    return SampleRecord(image.stem, image, mask)


def _good(root: Path, stem: str, size: tuple[int, int] = (16, 16)) -> SampleRecord:
    image, mask = write_pair(root / "images", root / "masks", stem, size, grey=True)
    return _record(image, mask)


def _cache(tmp_path: Path) -> PreflightCache:
    return PreflightCache(tmp_path / "data", 2, 1, [tmp_path / "cache"])


def test_every_kind_of_bad_file_is_found_in_one_pass(tmp_path):
    root = tmp_path / "data"
    good = _good(root, "good")
    zero = _good(root, "zero")
    zero.image.write_bytes(b"")
    truncated = _good(root, "truncated", (64, 64))
    truncated.image.write_bytes(truncated.image.read_bytes()[:100])
    small = _good(root, "small")
    write_image(small.mask, binary_mask((8, 16)))
    labels = _good(root, "labels")
    write_image(labels.mask, np.full((16, 16), 7, dtype=np.uint8))
    missing = _record(good.image, root / "masks" / "gone.png")
    failures = check_records([good, zero, truncated, small, labels, missing], 2, 1, progress=False)
    by_path = {f.path: str(f) for f in failures}
    assert set(by_path) == {zero.image, truncated.image, small.mask, labels.mask, missing.mask}
    assert "expected a readable" in by_path[zero.image] and str(zero.image) in by_path[zero.image]
    assert "expected a readable" in by_path[truncated.image]
    assert "(8, 16)" in by_path[small.mask] and "expected its image's size (16, 16)" in by_path[small.mask]
    assert "outside [0, 2)" in by_path[labels.mask]
    assert "not found" in by_path[missing.mask] and str(good.image) in by_path[missing.mask]


def test_channels_the_reader_cannot_give_are_a_failure(tmp_path):
    rgb = write_pair(tmp_path / "images", tmp_path / "masks", "rgb", (16, 16))
    failures = check_records([_record(*rgb)], 2, 2, progress=False)
    assert len(failures) == 1 and "cannot convert a 3-channel image to 2 channels" in str(failures[0])


def test_the_error_lists_every_failure_up_to_the_cap_and_counts_the_rest(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for i in range(25):
        _good(root / "train", f"t{i:02d}")
        write_image(root / "train" / "masks" / f"t{i:02d}.png", np.full((16, 16), 9, dtype=np.uint8))
    _good(root / "val", "v")
    _good(root / "test", "x")
    write_image(root / "test" / "masks" / "x.png", np.full((4, 4), 1, dtype=np.uint8))
    data = SegmentationDataModule(str(root), num_classes=2, in_channels=1, num_workers=0)
    with pytest.raises(ValueError) as info:
        preflight_datamodule(data, tmp_path / "runs", progress=False)
    message = str(info.value)
    assert message.startswith("data pre-flight: 26 problem(s) in 26 of 27 samples")
    assert f"[test] mask {root / 'test' / 'masks' / 'x.png'} has size (4, 4)" in message
    assert message.count("\n  [") == preflight.MAX_LISTED and message.endswith("... and 6 more")
    assert "--skip_checks" in message


def test_a_second_check_reads_nothing_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    records = [_good(tmp_path / "data", f"s{i}") for i in range(5)]
    calls: list[Path] = []
    real = preflight.read_image
    monkeypatch.setattr(preflight, "read_image", lambda path, ch: calls.append(Path(path)) or real(path, ch))
    assert check_records(records, 2, 1, _cache(tmp_path), progress=False) == []
    assert len(calls) == 5
    calls.clear()
    assert check_records(records, 2, 1, _cache(tmp_path), progress=False) == []
    assert calls == []
    assert check_records(records, 3, 1, PreflightCache(tmp_path / "data", 3, 1, [tmp_path / "cache"])) == []
    assert len(calls) == 5  # other settings, other keys
    calls.clear()
    stat = records[1].image.stat()
    os.utime(records[1].image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    write_image(records[2].mask, np.full((16, 16), 5, dtype=np.uint8))  # new size and content
    failures = check_records(records, 2, 1, _cache(tmp_path), progress=False)
    assert sorted(calls) == sorted([records[1].image, records[2].image])
    assert [f.path for f in failures] == [records[2].mask]


def test_the_cache_falls_back_when_the_first_folder_is_not_writable(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    records = [_good(tmp_path / "data", "a")]
    cache = PreflightCache(tmp_path / "data", 2, 1, [blocked / "sub", tmp_path / "fallback"])
    check_records(records, 2, 1, cache, progress=False)
    assert cache.path is not None and cache.path.parent == tmp_path / "fallback"
    assert "was not writable" in caplog.text
    again = PreflightCache(tmp_path / "data", 2, 1, [blocked / "sub", tmp_path / "fallback"])
    assert again.key(records[0]) in again  # read back from the fallback folder


def test_skip_checks_reads_nothing(tmp_path, monkeypatch):
    _good(tmp_path / "data", "a")
    data = SegmentationDataModule(str(tmp_path / "data"), num_classes=2, in_channels=1, num_workers=0)
    monkeypatch.setattr(preflight, "check_records", lambda *a, **k: pytest.fail("checked despite skip"))
    preflight_datamodule(data, tmp_path / "runs", skip=True)


def test_run_py_caches_the_check_and_skip_checks_skips_it(tmp_path, monkeypatch):
    from run import main

    main(tiny_args(tmp_path, "--trainer.fast_dev_run", "true"))
    assert len(list((tmp_path / "runs" / ".preflight").glob("nuclei-*-c2-ch1.json"))) == 1
    monkeypatch.setattr(
        preflight, "check_records", lambda *a, **k: pytest.fail("checked despite --skip_checks")
    )
    main(tiny_args(tmp_path, "--trainer.fast_dev_run", "true", "--skip_checks"))


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_run_py_with_a_bad_test_mask_fails_before_training(tmp_path):
    data = tmp_path / "nuclei"
    shutil.copytree(SAMPLE, data)
    bad = sorted((data / "test" / "masks").glob("*.png"))[0]
    write_image(bad, np.full((20, 20), 3, dtype=np.uint8))
    before = _digests(data)
    args = ["--cfg", "configs/demo.yaml", "--data.root", str(data), "--runs_dir", str(tmp_path / "runs")]
    done = subprocess.run(
        [sys.executable, "run.py", *args, "--trainer.max_epochs", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SPSEG_DEBUG": "0"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "run.py: error: data pre-flight: 1 problem(s) in 1 of 16 samples" in done.stderr
    assert f"[test] mask {bad} has values [3] outside [0, 2)" in done.stderr
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [".preflight"]  # no run folder left
    assert _digests(data) == before
