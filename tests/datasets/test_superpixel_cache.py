from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from datasets.records import SampleRecord
from datasets.superpixels import cache as cache_mod
from datasets.superpixels.cache import SuperpixelCache, build_spec, cache_key, decode_map, encode_map
from datasets.superpixels.config import SuperpixelConfig
from datasets.superpixels.loader_hook import make_superpixel_hook, resize_labels_nearest

PARAMS = {"n_segments": 16, "compactness": 10}


def _cache(root: Path, **overrides) -> SuperpixelCache:
    kwargs = {"method": "slic", "backend": "skimage", "params": PARAMS, "size": 32, "channels": 3}
    kwargs.update(overrides)
    return SuperpixelCache(root, **kwargs)


def _labels(shape=(32, 32), k=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, k, shape).astype(np.int32)


def _image(shape=(48, 40), seed=0) -> np.ndarray:
    # Smooth blocks plus noise: SLIC finds several segments.
    rng = np.random.default_rng(seed)
    base = np.kron(rng.random((4, 4, 3)), np.ones((12, 10, 1)))[: shape[0], : shape[1]]
    return np.clip(base + 0.02 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


def test_round_trip_and_manifest(tmp_path):
    cache = _cache(tmp_path)
    labels = _labels()
    nbytes = cache.put("img/1 ä", labels)
    got = cache.get("img/1 ä")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, labels)
    assert cache.get("absent") is None
    manifest = cache.read_manifest()
    assert manifest["images"]["img/1 ä"] == {"count": 7, "bytes": nbytes}
    assert manifest["spec"]["params"]["compactness"] == 10.0
    assert cache.folder.name.startswith("slic_16_") and cache.folder.name.endswith(cache.key)
    assert cache.stored_ids() == ["img/1 ä"]


def test_large_labels_use_32_bit(tmp_path):
    labels = np.full((32, 32), 70000, dtype=np.int64)
    labels[0, 0] = 0
    np.testing.assert_array_equal(decode_map(encode_map(labels, "k" * 16), "k" * 16), labels)


def test_key_covers_every_setting_and_defaults():
    base = build_spec("slic", "skimage", PARAMS, 32, 3)
    assert cache_key(base) == cache_key(build_spec("slic", "skimage", {**PARAMS, "max_iter": 10}, 32, 3))
    variants = [
        build_spec("slic", "skimage", {**PARAMS, "compactness": 5}, 32, 3),
        build_spec("slic", "numba", PARAMS, 32, 3),
        build_spec("slic", "skimage", PARAMS, 64, 3),
        build_spec("slic", "skimage", PARAMS, (32, 48), 3),
        build_spec("slic", "skimage", PARAMS, 32, 1),
        build_spec("slic", "skimage", PARAMS, 32, 3, body_mask=True),
        build_spec("slic", "skimage", {**PARAMS, "sigma": 1.0}, 32, 3),
    ]
    keys = {cache_key(base)} | {cache_key(v) for v in variants}
    assert len(keys) == len(variants) + 1


def test_changed_compactness_never_returns_old_map(tmp_path):
    _cache(tmp_path).put("a", _labels())
    other = _cache(tmp_path, params={**PARAMS, "compactness": 5})
    assert other.folder != _cache(tmp_path).folder
    assert other.get("a") is None


def test_unknown_param_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="compactnes"):
        _cache(tmp_path, params={"compactnes": 10})


def test_truncated_file_detected_quarantined_and_reported(tmp_path, caplog):
    cache = _cache(tmp_path)
    cache.put("a", _labels())
    path = cache.path_for("a")
    path.write_bytes(path.read_bytes()[:-5])
    with caplog.at_level(logging.WARNING, logger="datasets.superpixels.cache"):
        assert cache.get("a") is None
    assert str(path) in caplog.text
    assert not path.exists() and (cache.folder / "quarantine" / path.name).exists()
    report = cache.verify()
    assert report.missing == ["a"] and not report.healthy


@pytest.mark.parametrize("damage", ["magic", "key", "crc", "short"])
def test_damaged_header_or_payload_detected(tmp_path, damage):
    cache = _cache(tmp_path)
    cache.put("a", _labels())
    path = cache.path_for("a")
    blob = bytearray(path.read_bytes())
    if damage == "magic":
        blob[0:4] = b"XXXX"
    elif damage == "key":
        blob[8:24] = b"0123456789abcdef"
    elif damage == "crc":
        blob[-1] ^= 0xFF
    else:
        blob = blob[:10]
    path.write_bytes(bytes(blob))
    assert cache.verify().corrupt == ["a"]
    assert cache.get("a") is None


def test_map_from_another_key_in_the_folder_is_rejected(tmp_path):
    cache = _cache(tmp_path)
    other = _cache(tmp_path, params={**PARAMS, "compactness": 5})
    cache.folder.mkdir(parents=True)
    cache.path_for("a").write_bytes(encode_map(_labels(), other.key))
    assert cache.get("a") is None


def test_failed_replace_leaves_no_partial_file(tmp_path, monkeypatch):
    cache = _cache(tmp_path)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.put("a", _labels())
    monkeypatch.undo()
    assert cache.get("a") is None
    assert [p.name for p in cache.folder.iterdir()] == []


def test_put_wrong_shape_raises(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(16, 16\).*\(32, 32\)"):
        _cache(tmp_path).put("a", _labels((16, 16)))


def test_verify_counts_ok_corrupt_missing_unlisted(tmp_path):
    cache = _cache(tmp_path)
    for name in "abcd":
        cache.put(name, _labels())
    cache.put("e", _labels(), record=False)
    os.remove(cache.path_for("b"))
    cache.path_for("c").write_bytes(b"garbage")
    # half-written temp files of killed writers (either naming) are not maps
    (cache.folder / ".f.spx.1a2b3c4d.tmp").write_bytes(b"half")
    (cache.folder / ".g.spx.1a2b3c4d.tmp.spx").write_bytes(b"half")
    report = cache.verify()
    assert (report.ok, report.corrupt, report.missing, report.unlisted) == (["a", "d"], ["c"], ["b"], ["e"])
    assert cache.stored_ids() == ["a", "c", "d", "e"]


def test_resize_labels_nearest_centre_aligned():
    labels = np.array([[1, 2], [3, 4]])
    np.testing.assert_array_equal(
        resize_labels_nearest(labels, (4, 4)), [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )
    np.testing.assert_array_equal(
        resize_labels_nearest(np.arange(16).reshape(4, 4), (2, 2)), [[5, 7], [13, 15]]
    )


def _record(tmp_path: Path, name: str = "img0") -> SampleRecord:
    return SampleRecord(id=name, image=tmp_path / f"{name}.png", mask=None)


def test_cpu_hook_aligned_with_image_and_picklable(tmp_path):
    config = SuperpixelConfig(source="cpu", backend="skimage", params=PARAMS, size=32)
    hook = pickle.loads(pickle.dumps(make_superpixel_hook(config, tmp_path, (48, 40), 3)))
    image = _image()
    out = hook(_record(tmp_path), image)["superpixels"]
    assert out.shape == (48, 40) and out.dtype == np.int32
    assert len(np.unique(out)) > 3


def test_cached_and_on_the_fly_maps_are_identical(tmp_path):
    image = _image()
    cpu = make_superpixel_hook(
        SuperpixelConfig(source="cpu", backend="skimage", params=PARAMS, size=32), tmp_path, 48, 3
    )
    cached_cfg = SuperpixelConfig(
        source="cache", backend="skimage", params=PARAMS, size=32, compute_missing=True
    )
    cached = make_superpixel_hook(cached_cfg, tmp_path, 48, 3)
    first = cached(_record(tmp_path), image)["superpixels"]
    assert cached.cache.get("img0") is not None  # computed and stored
    assert cached.cache.folder.parent == tmp_path / ".superpixel_cache"
    np.testing.assert_array_equal(first, cpu(_record(tmp_path), image)["superpixels"])
    np.testing.assert_array_equal(first, cached(_record(tmp_path), image)["superpixels"])


def test_cache_hook_missing_map_raises_with_command(tmp_path):
    config = SuperpixelConfig(source="cache", backend="skimage", params=PARAMS, size=32)
    hook = make_superpixel_hook(config, tmp_path, 48, 3, layout="folder")
    with pytest.raises(FileNotFoundError) as info:
        hook(_record(tmp_path), _image())
    message = str(info.value)
    assert "1 superpixel map(s) missing" in message
    assert "python sp_generation.py --root" in message and "--layout folder" in message
    assert "--param compactness=10" in message and "--size 32 32" in message
    with pytest.raises(FileNotFoundError, match="2 superpixel map"):
        hook.ensure_complete([_record(tmp_path, "x"), _record(tmp_path, "y")])


def test_gpu_source_gives_no_hook(tmp_path):
    assert make_superpixel_hook(SuperpixelConfig(source="gpu"), tmp_path, 32, 3) is None


def test_hook_rejects_wrong_channel_count(tmp_path):
    hook = make_superpixel_hook(SuperpixelConfig(backend="skimage", params=PARAMS), tmp_path, 32, 1)
    with pytest.raises(ValueError, match=r"img0.*\(H, W, 1\)"):
        hook(_record(tmp_path), _image())


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="source"):
        SuperpixelConfig(source="disk")
    with pytest.raises(ValueError, match="size"):
        SuperpixelConfig(size=2)


def test_manifest_count_excludes_background_outside_body_mask(tmp_path):
    labels = np.zeros((32, 32), dtype=np.int32)
    labels[8:16, 8:16], labels[16:24, 8:16] = 1, 2
    masked = _cache(tmp_path, body_mask=True)
    masked.put("a", labels)
    assert masked.read_manifest()["images"]["a"]["count"] == 2
    plain = _cache(tmp_path)
    plain.put("a", labels)
    assert plain.read_manifest()["images"]["a"]["count"] == 3


def test_a_backend_whose_maps_changed_gets_a_new_key(monkeypatch):
    """Regression: numba's maps changed (v2) but the key did not, so old caches were served as new."""
    from datasets.superpixels import engine

    spec = build_spec("slic", "numba", PARAMS, 32, 3)
    assert spec["backend_map_version"] == engine.backend_map_version("slic", "numba") == 3
    monkeypatch.setattr(engine, "backend_map_version", lambda method, backend: 1)
    monkeypatch.setattr("datasets.superpixels.cache.backend_map_version", lambda method, backend: 1)
    assert cache_key(build_spec("slic", "numba", PARAMS, 32, 3)) != cache_key(spec)
