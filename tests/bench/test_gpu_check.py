"""The GPU check's CPU smoke mode: every section runs and reports what the GPU run will report."""

from __future__ import annotations

import re

import pytest

from bench.gpu_check import main
from bench.gpu_check_parts import bandwidth_floor_us


def test_bandwidth_floor_hand_value():
    # 256 x 256 pixels x 52 bytes x 10 iterations at 4.8 TB/s = 7.1 us
    assert bandwidth_floor_us(256, 256, 10) == pytest.approx(256 * 256 * 52 * 10 / 4.8e12 * 1e6)
    assert bandwidth_floor_us(256, 256, 10) == pytest.approx(7.0997, abs=1e-3)


def test_quick_cpu_run_covers_every_section(tmp_path):
    report = main(["--device", "cpu", "--quick", "--out", str(tmp_path / "check.json")])
    assert (tmp_path / "check.json").is_file() and report["environment"]["torch"]
    rows = {row["name"]: row for row in report["run_py"]}
    assert set(rows) == {"demo 32-true", "demo bf16-mixed", "demo ddp bf16-mixed", "unet32-256 bf16-mixed"}
    for name, row in rows.items():
        assert row["rc"] == 0, row.get("error")
        assert row["test_written"] and 0.0 <= row["test_dice"] <= 1.0, name
        assert row["images_per_s"] > 0, name
    assert (
        rows["demo 32-true"]["framework_vs_plain"] > 0
        and "framework_vs_plain" not in rows["demo ddp bf16-mixed"]
    )
    (mim,) = report["mim"]
    assert mim["images_per_s_gpu_superpixels"] > 0 and 0 < mim["superpixel_fraction_of_step"] < 1.5
    slic = report["slic"]
    assert 0 < slic["mean_segments_torch"] <= 512 and 0.0 <= slic["boundary_recall_torch"] <= 1.0
    assert slic["images_per_s_connectivity_True"] > 0
    gen = report["sp_generation"]
    assert gen["generate"]["rc"] == 0 and gen["verify"]["rc"] == 0, gen
    ok = re.search(r"ok (\d+), corrupt 0, missing 0", gen["verify"]["tail"])
    assert ok and int(ok.group(1)) > 0, gen["verify"]["tail"]
