"""Bad-input catalogue: every user error stops ``run.py`` with exit 2, names the culprit, prints no
traceback and leaves the inputs byte-identical (each case on its own copy of the sample)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import run_entry_point
from run import _run_and_print
from tests.engine.conftest import REPO, tiny_args

NUCLEI = REPO / "datasets" / "sample" / "nuclei"


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _remove_mask(root: Path) -> tuple[list[str], str]:
    (root / "train" / "masks" / "r0_c0.png").unlink()
    return [], "r0_c0"


def _resize_test_mask(root: Path) -> tuple[list[str], str]:
    path = root / "test" / "masks" / sorted(p.name for p in (root / "test" / "masks").iterdir())[0]
    Image.open(path).resize((64, 64), Image.NEAREST).save(path)
    return [], path.name


def _truncate_image(root: Path) -> tuple[list[str], str]:
    path = root / "val" / "images" / sorted(p.name for p in (root / "val" / "images").iterdir())[0]
    path.write_bytes(path.read_bytes()[:40])
    return [], path.name


def _empty_image(root: Path) -> tuple[list[str], str]:
    path = root / "train" / "images" / "r0_c2.png"
    path.write_bytes(b"")
    return [], "r0_c2.png"


def _labels_out_of_range(root: Path) -> tuple[list[str], str]:
    path = root / "train" / "masks" / "r0_c3.png"
    Image.fromarray(np.full((128, 128), 7, dtype=np.uint8)).save(path)
    return [], "r0_c3.png"


def _yaml_typo(root: Path) -> tuple[list[str], str]:
    text = (REPO / "configs" / "demo.yaml").read_text().replace("batch_size: 4", "batch_sise: 4")
    config = root.parent / "typo.yaml"
    config.write_text(
        text.replace("base: base_segmentation.yaml", f"base: {REPO / 'configs' / 'base_segmentation.yaml'}")
    )
    return ["--cfg", str(config)], "did you mean 'batch_size'"


CASES: dict[str, tuple[Callable[[Path], tuple[list[str], str]], str]] = {
    # name: (how the copy is broken, what the message must contain besides the returned culprit)
    "missing root": (lambda root: (["--data.root", str(root / "nope")], "nope"), "not found"),
    "image without mask": (_remove_mask, "mask"),
    "test mask of another size": (_resize_test_mask, "size"),
    "truncated image": (_truncate_image, ""),
    "zero-byte image": (_empty_image, ""),
    "labels out of range": (_labels_out_of_range, "7"),
    "yaml typo": (_yaml_typo, "typo.yaml"),
    "unknown flag": (lambda root: (["--trainer.max_epoch", "1"], "trainer.max_epochs"), "command line"),
    "bad value": (lambda root: (["--data.batch_size", "four"], "data.init_args.batch_size"), "expected int"),
    "evaluate without ckpt": (lambda root: (["--evaluate"], "--evaluate needs --ckpt"), ""),
    # Regression: a settings block's own check inside the data module printed jsonargparse's nested
    # "Does not validate against any of the Union subtypes" listing instead of its one line.
    "bad settings block": (
        lambda root: (
            ["--data.sampling", "patch", "--data.patches.foreground_fraction", "2"],
            "in [0, 1], got 2",
        ),
        "data.patches.foreground_fraction",
    ),
    "missing checkpoint": (
        lambda root: (["--evaluate", "--ckpt", str(root / "x.ckpt")], "x.ckpt"),
        "not found",
    ),
}


def test_impossible_superpixel_policy_stops_naming_k_n_and_the_count(tmp_path, capsys):
    """Regression: --aug_k 16 --aug_n 32 trained with every superpixel masked (the config clamped)."""
    root = tmp_path / "abdomen_ct"
    shutil.copytree(REPO / "datasets" / "sample" / "abdomen_ct", root)
    before = _hashes(root)
    argv = [
        "--cfg",
        str(REPO / "configs" / "config_inpainting_sample.yaml"),
        "--runs_dir",
        str(tmp_path / "runs"),
    ]
    argv += ["--data.root", str(root), "--data.num_workers", "0", "--aug_k", "16", "--aug_n", "32"]
    argv += ["--model.encoder_name", "resnet18", "--data.image_size", "64", "--trainer.fast_dev_run", "1"]
    assert run_entry_point("run.py", _run_and_print, argv) == 2
    err = capsys.readouterr().err
    assert "run.py: error:" in err and "k=16, n=32" in err and "real superpixel count" in err
    assert "Traceback" not in err and _hashes(root) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_stops_in_one_message_and_touches_nothing(tmp_path, capsys, case):
    root = tmp_path / "nuclei"
    shutil.copytree(NUCLEI, root)
    breaker, expected = CASES[case]
    extra, culprit = breaker(root)
    before = _hashes(root)
    argv = [*tiny_args(tmp_path, "--data.root", str(root)), *extra]
    assert run_entry_point("run.py", _run_and_print, argv) == 2
    err = capsys.readouterr().err
    assert "run.py: error:" in err and culprit in err and expected in err, err[-2000:]
    assert "Traceback" not in err and "Union subtypes" not in err
    assert _hashes(root) == before  # the inputs are untouched
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # stopped before any training step was saved
