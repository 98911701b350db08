"""Tiny data and checkpoints in each shipped config's layout, for tests/engine/test_every_config.py.

Each entry of :data:`FIXTURES` maps a config file name to a function ``(tmp_path) -> extra args`` that
writes what the config reads (a dataset in its layout, the checkpoints it loads, a superpixel cache)
and returns the overrides pointing the config at them. A new config needs an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from datasets.noise.cli import generate_noisy_dataset
from datasets.volumes.io import Volume
from datasets.volumes.prepare import write_prepared
from tests.datasets.conftest import LAYOUT_WRITERS, make_isic2016
from tests.datasets.test_jsrt import _write_gif, _write_img
from tests.datasets.volume_fixtures import make_acdc
from tests.policy_search.test_trial import save_lightning_checkpoint, write_tiny_checkpoints

from .conftest import REPO

Fixture = Callable[[Path], list[str]]
CONFIG_DIR = REPO / "configs"
ORGANS = {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4}


def sample(tmp_path: Path) -> list[str]:
    """Configs on the embedded sample: nothing to write."""
    return []


def layout_root(layout: str) -> Fixture:
    """A tiny dataset in ``layout`` (tests/datasets/conftest.py writers) as ``data.root``."""
    return lambda tmp_path: ["--data.root", str(LAYOUT_WRITERS[layout](tmp_path / layout))]


def sp_cache(config: str, root: Path, size: int) -> None:
    """Precompute the superpixel cache a ``source: cache`` config reads, as its comment tells users."""
    from sp_generation import main as generate

    assert generate(["--cfg", str(CONFIG_DIR / config), "--root", str(root), "--size", str(size)]) == 0


def inpainting_checkpoint(folder: Path, encoder_name: str, in_channels: int) -> Path:
    """An (untrained) MIM checkpoint whose encoder a downstream config transfers."""
    from pretext.inpainting import SuperpixelInpainting

    torch.manual_seed(0)
    module = SuperpixelInpainting(in_channels=in_channels, encoder_name=encoder_name, n_masked=4)
    return save_lightning_checkpoint(module, folder / "inpainting.ckpt")


def isic2016_five_folds(tmp_path: Path) -> list[str]:
    """isic2016.yaml: no val split in the layout, so val is fold 0 of five: five training images."""
    return ["--data.root", str(make_isic2016(tmp_path / "isic2016", n_train=5))]


def autosmim_downstream(tmp_path: Path) -> list[str]:
    """config.yaml: ISIC 2017 fine-tuning from a MIM checkpoint of the same encoder."""
    ckpt = inpainting_checkpoint(tmp_path, "tu-tf_efficientnetv2_s", 3)
    return layout_root("isic2017")(tmp_path) + ["--model.pretrained", str(ckpt)]


def autosmim_inpainting(tmp_path: Path) -> list[str]:
    """config_inpainting.yaml: HAM10000 with its superpixel cache precomputed.

    The synthetic images' flat regions give SLIC ~120 segments at k=512 (crops show fewer), so the
    paper's n=128 is impossible for them (an error since on_excess is error): n=16 here.
    """
    root = LAYOUT_WRITERS["ham10000"](tmp_path / "ham")
    sp_cache("config_inpainting.yaml", root, 512)
    return ["--data.root", str(root), "--aug_n", "16"]


def policy_search(tmp_path: Path) -> list[str]:
    """config_search(.yaml/_sample.yaml): the two frozen step-1 models the proxy objective loads."""
    inpainting, jigsaw = write_tiny_checkpoints(tmp_path)
    return [
        "--model.inpainting_checkpoint",
        str(inpainting),
        "--model.jigsaw_checkpoint",
        str(jigsaw),
        "--data.in_channels",
        "1",
    ]


def policy_search_ham(tmp_path: Path) -> list[str]:
    """config_search.yaml on a HAM10000 fixture (grey-converted: the tiny models are 1-channel)."""
    return policy_search(tmp_path) + layout_root("ham10000")(tmp_path)


def kd_teacher(tmp_path: Path) -> list[str]:
    """kd_sample.yaml: a teacher checkpoint written as a demo run would."""
    from models.segmentation_module import SegmentationModule

    torch.manual_seed(0)
    teacher = SegmentationModule(model="unet", in_channels=3, num_classes=2, model_kwargs={"base_channel": 4})
    return ["--model.teacher_checkpoint", str(save_lightning_checkpoint(teacher, tmp_path / "teacher.ckpt"))]


def acdc_volumes(tmp_path: Path) -> list[str]:
    """acdc.yaml / byol_acdc.yaml: three ACDC patients (two frames each) and a patient split file."""
    import json

    root = make_acdc(tmp_path / "acdc", patients=3)
    split = tmp_path / "acdc_split.json"
    split.write_text(json.dumps({"train": ["patient001"], "val": ["patient002"], "test": ["patient003"]}))
    return ["--data.root", str(root), "--data.split_file", str(split)]


def prepared_volumes(tmp_path: Path) -> list[str]:
    """CHAOS/SABS configs: ten prepared scans (five folds) with all four organs."""
    yy, xx = np.mgrid[:32, :32]
    scans = {}
    for i in range(10):
        image = np.zeros((32, 32, 10), np.float32)
        label = np.zeros((32, 32, 10), np.int16)
        image[(yy - 16) ** 2 + (xx - 16) ** 2 < 200] = 1.0
        label[4:14, 4 + i % 3 : 16, 1:9] = 1
        label[18:26, 18:26, 2:7] = 2
        label[18:24, 6:12, 3:8] = 3
        label[6:12, 20:26, 3:8] = 4
        image[label > 0] += label[label > 0] + 0.1 * i
        scans[f"scan{i:02d}"] = (Volume(image, np.eye(4)), Volume(label, np.eye(4)))
    root = write_prepared(tmp_path / "prepared", scans, ORGANS, "MR", {"MR": None})
    return [
        "--data.root",
        str(root),
        "--data.pseudolabel_dir",
        str(tmp_path / "pseudolabels"),
        "--data.min_fg_pixels",
        "1",
        "--data.superpixel_min_size",
        "10",
    ]


def noisy_view(config: str, layout: str, make_clean: Callable[[Path], Path]) -> Fixture:
    """A noisy-label view of a tiny clean dataset (as ``datasets.noise.cli`` writes) + its cache."""

    def fixture(tmp_path: Path) -> list[str]:
        clean = make_clean(tmp_path / "clean")
        view = generate_noisy_dataset(clean, layout, alpha=0.5, beta=0.5, seed=0)
        sp_cache(config, view, 64)
        return ["--data.root", str(view)]

    return fixture


def jsrt_root(root: Path) -> Path:
    """Six JSRT images with SCR masks (enough for the config's five folds)."""
    for i in range(6):
        image = np.zeros((32, 32), np.uint16)
        image[:, 16:] = 4000 - 100 * i
        _write_img(root / "All247images" / f"JPCLN{i:03d}.IMG", image)
        for name in ("left lung", "right lung", "heart", "left clavicle", "right clavicle"):
            inside = np.zeros((16, 16), bool)
            inside[3 + i % 2 : 13, 2:7] = name == "right lung"
            inside[3:13, 9:14] = name == "left lung"
            _write_gif(root / "scratch" / "masks" / "fold1" / name / f"JPCLN{i:03d}.gif", inside)
    return root


FIXTURES: dict[str, Fixture] = {
    "base_segmentation.yaml": layout_root("folder"),
    "acdc.yaml": acdc_volumes,
    "byol_acdc.yaml": acdc_volumes,
    "byol_volume_sample.yaml": sample,
    "byol_sample.yaml": sample,
    "config.yaml": autosmim_downstream,
    "config_colorization_sample.yaml": sample,
    "config_inpainting.yaml": autosmim_inpainting,
    "config_inpainting_sample.yaml": sample,
    "config_jigsaw_sample.yaml": sample,
    "config_rotation_sample.yaml": sample,
    "config_search.yaml": policy_search_ham,
    "config_search_sample.yaml": policy_search,
    "demo.yaml": sample,
    "demo_ct.yaml": sample,
    "demo_patches.yaml": sample,
    "demo_volume.yaml": sample,
    "downstream_sample.yaml": sample,
    "downstream_volume_sample.yaml": sample,
    "fewshot_chaos_setting1.yaml": prepared_volumes,
    "fewshot_chaos_setting2.yaml": prepared_volumes,
    "fewshot_sabs_setting1.yaml": prepared_volumes,
    "fewshot_sabs_setting2.yaml": prepared_volumes,
    "fewshot_sample.yaml": sample,
    "fewshot_sample_cross.yaml": sample,
    "folder.yaml": layout_root("folder"),
    "isic2016.yaml": isic2016_five_folds,
    "isic2017.yaml": layout_root("isic2017"),
    "isic2018.yaml": layout_root("isic2018"),
    "kd_sample.yaml": kd_teacher,
    "kvasir.yaml": layout_root("polyp"),
    "mim_volume_sample.yaml": sample,
    "noisy_isic2017.yaml": noisy_view("noisy_isic2017.yaml", "isic2017", LAYOUT_WRITERS["isic2017"]),
    "noisy_jsrt.yaml": noisy_view("noisy_jsrt.yaml", "jsrt_lungs", jsrt_root),
    "noisy_sample.yaml": sample,
    "noisy_sample_clean.yaml": sample,
    "noisy_sample_coteaching.yaml": sample,
    "noisy_sample_jocor.yaml": sample,
    "noisy_sample_plain.yaml": sample,
}
# Configs stacked onto a run config (``--cfg demo.yaml --cfg wandb.yaml``), never run alone.
FRAGMENTS = {"wandb.yaml"}
NNI_FILES = {"nni_config.yaml", "nni_config_sample.yaml"}
