from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import sp_generation
from datasets.superpixels.cache import SuperpixelCache

FLAGS = ["--method", "slic", "--backend", "skimage", "--k", "16", "--compactness", "10", "--size", "32"]


def _write_images(folder: Path, n: int = 4, size=(40, 36)) -> list[Path]:
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        blocks = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((10, 9, 1))).astype(np.uint8)
        path = folder / ("sub" if i % 2 else "") / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(blocks[: size[0], : size[1]]).save(path)
        paths.append(path)
    return paths


def _cache(out: Path, **kw) -> SuperpixelCache:
    return SuperpixelCache(
        out, "slic", "skimage", {"n_segments": 16, "compactness": 10}, 32, kw.get("channels", 3)
    )


def _run(*args: str) -> int:
    return sp_generation.main([*args, "--workers", "1"])


def test_generation_writes_every_image_with_stem_ids(tmp_path, capsys):
    _write_images(tmp_path / "imgs")
    out = tmp_path / "cache"
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS) == 0
    cache = _cache(out)
    assert cache.stored_ids() == ["img0", "img1", "img2", "img3"]
    assert cache.verify().ok == ["img0", "img1", "img2", "img3"]
    text = capsys.readouterr().out
    assert "written 4, skipped 0" in text and "failed 0" in text and "mean bytes per image" in text


def test_default_cache_dir_is_under_root_and_not_scanned(tmp_path):
    _write_images(tmp_path)
    assert _run("--root", str(tmp_path), *FLAGS) == 0
    assert len(_cache(tmp_path / ".superpixel_cache").stored_ids()) == 4
    assert _run("--root", str(tmp_path), *FLAGS) == 0  # the cache folder itself holds no images


def test_second_run_is_resumable_and_writes_nothing(tmp_path, capsys):
    _write_images(tmp_path / "imgs")
    out = tmp_path / "cache"
    _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS)
    files = sorted(_cache(out).folder.glob("*.spx"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    capsys.readouterr()
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS) == 0
    assert "written 0, skipped 4" in capsys.readouterr().out
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_truncated_map_is_regenerated_by_second_run(tmp_path, capsys):
    _write_images(tmp_path / "imgs")
    out = tmp_path / "cache"
    _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS)
    cache = _cache(out)
    good = cache.get("img2")
    path = cache.path_for("img2")
    path.write_bytes(path.read_bytes()[:30])
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS, "--verify") == 1
    assert f"CORRUPT {path}" in capsys.readouterr().out
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS) == 0
    assert "written 1, skipped 3" in capsys.readouterr().out
    np.testing.assert_array_equal(cache.get("img2"), good)
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS, "--verify") == 0


def test_changed_parameter_gives_new_cache_folder(tmp_path):
    _write_images(tmp_path / "imgs", n=2)
    out = tmp_path / "cache"
    _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS)
    _run(
        "--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS[:-4], "--compactness", "5", "--size", "32"
    )
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


def test_failing_image_is_reported_and_others_are_written(tmp_path, capsys):
    _write_images(tmp_path / "imgs", n=3)
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"not a png")
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(tmp_path / "c"), *FLAGS) == 1
    captured = capsys.readouterr()
    assert f"FAILED {bad}" in captured.out and "written 3" in captured.out
    assert len(_cache(tmp_path / "c").stored_ids()) == 3


def test_worker_pool_gives_same_maps_as_single_process(tmp_path):
    _write_images(tmp_path / "imgs")
    sp_generation.main(
        ["--root", str(tmp_path / "imgs"), "--out", str(tmp_path / "a"), *FLAGS, "--workers", "1"]
    )
    sp_generation.main(
        ["--root", str(tmp_path / "imgs"), "--out", str(tmp_path / "b"), *FLAGS, "--workers", "2"]
    )
    a, b = _cache(tmp_path / "a"), _cache(tmp_path / "b")
    assert a.stored_ids() == b.stored_ids() and len(a.stored_ids()) == 4
    for image_id in a.stored_ids():
        np.testing.assert_array_equal(a.get(image_id), b.get(image_id))
    assert sorted(b.read_manifest()["images"]) == b.stored_ids()


def test_cfg_files_stack_and_match_the_loader_hook(tmp_path):
    root = tmp_path / "data"
    _write_images(root / "images", n=2)
    (root / "masks").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((40, 36), np.uint8)).save(root / "masks" / f"img{i}.png")
    (root / "images" / "sub" / "img1.png").rename(root / "images" / "img1.png")
    (root / "images" / "sub").rmdir()
    sp = {"source": "cache", "backend": "skimage", "params": {"n_segments": 16, "compactness": 3}, "size": 32}
    base = {
        "data": {"init_args": {"root": str(root), "layout": "folder", "image_size": 64, "in_channels": 1}}
    }
    more = {"data": {"init_args": {"superpixels": sp}}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(more))
    assert (
        sp_generation.main(
            ["--cfg", str(tmp_path / "a.yaml"), "--cfg", str(tmp_path / "b.yaml"), "--workers", "1"]
        )
        == 0
    )

    from datasets.image_io import read_image
    from datasets.layouts import find_samples
    from datasets.superpixels.config import SuperpixelConfig
    from datasets.superpixels.loader_hook import make_superpixel_hook

    hook = make_superpixel_hook(SuperpixelConfig(**sp), root, 64, 1)
    records = find_samples("folder", root, "train")
    hook.ensure_complete(records)  # every id the loader asks for is in the cache
    cpu = make_superpixel_hook(SuperpixelConfig(**{**sp, "source": "cpu"}), root, 64, 1)
    image = read_image(records[0].image, 1)
    np.testing.assert_array_equal(
        hook(records[0], image)["superpixels"], cpu(records[0], image)["superpixels"]
    )


def test_cfg_without_superpixel_section_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"data": {"init_args": {"root": str(tmp_path)}}}))
    with pytest.raises(ValueError, match="superpixels"):
        sp_generation.main(["--cfg", str(tmp_path / "a.yaml")])


def test_bad_param_syntax_and_missing_size(tmp_path):
    _write_images(tmp_path, n=1)
    with pytest.raises(ValueError, match="NAME=VALUE"):
        _run("--root", str(tmp_path), "--param", "sigma")
    with pytest.raises(ValueError, match="no size"):
        _run("--root", str(tmp_path))


def test_batched_torch_backend_on_cpu(tmp_path, capsys):
    pytest.importorskip("torch")
    _write_images(tmp_path / "imgs", n=3)
    args = ["--root", str(tmp_path / "imgs"), "--out", str(tmp_path / "c"), "--backend", "torch", "--k", "16"]
    assert _run(*args, "--size", "32", "--device", "cpu", "--batch", "2") == 0
    cache = SuperpixelCache(tmp_path / "c", "slic", "torch", {"n_segments": 16}, 32, 3)
    assert len(cache.verify().ok) == 3
    assert "written 3" in capsys.readouterr().out


def test_cuda_device_with_cpu_backend_is_an_error(tmp_path):
    _write_images(tmp_path, n=1)
    with pytest.raises(ValueError, match="--backend torch"):
        _run("--root", str(tmp_path), *FLAGS, "--device", "cuda")


def test_verify_reports_missing_listed_maps(tmp_path, capsys):
    _write_images(tmp_path / "imgs", n=2)
    out = tmp_path / "cache"
    _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS)
    os.remove(_cache(out).path_for("img0"))
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS, "--verify") == 1
    assert "MISSING img0" in capsys.readouterr().out


def test_verify_checks_the_images_on_disk_after_an_interrupted_run(tmp_path, capsys):
    """Regression: after a kill before the manifest was written, --verify said ok and exited 0."""
    paths = _write_images(tmp_path / "imgs", n=4)
    out = tmp_path / "cache"
    cache = _cache(out)
    for path in paths[:2]:  # what a killed run leaves: maps written, manifest not yet
        cache.put(path.stem, np.zeros((32, 32), dtype=np.int32), record=False)
    capsys.readouterr()
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS, "--verify") == 1
    text = capsys.readouterr().out
    assert "against 4 images" in text and "images without a map 2" in text and "unlisted 2" in text
    assert f"NO MAP {paths[2]}" in text and f"NO MAP {paths[3]}" in text
    assert not cache.manifest_path.exists()  # --verify modifies nothing
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS) == 0  # records + completes
    assert set(cache.read_manifest()["images"]) == {p.stem for p in paths}
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS, "--verify") == 0


def test_no_lock_file_is_left_behind(tmp_path):
    """Regression: the manifest lock left a .manifest.lock file in the cache folder."""
    _write_images(tmp_path / "imgs", n=2)
    out = tmp_path / "cache"
    assert _run("--root", str(tmp_path / "imgs"), "--out", str(out), *FLAGS) == 0
    folder = _cache(out).folder
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
