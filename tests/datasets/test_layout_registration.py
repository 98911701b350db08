"""Every layout is registered as soon as any dataset module is imported (configs can name them all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_plugin_layouts_are_registered_by_importing_layouts_alone():
    code = "from datasets.layouts import LAYOUTS; print(','.join(sorted(LAYOUTS)))"
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(",")
    )
    for name in ("folder", "polyp", "isic2016", "isic2017", "isic2018", "ham10000", "jsrt", "noisy"):
        assert name in out
