"""The numba SLIC backend: hand-made cases, label invariants, early stop, threads, fast paths."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from skimage import color, data, transform

from datasets.superpixels import engine, is_connected, superpixels
from datasets.superpixels.colour import slic_features
from datasets.superpixels.connectivity import enforce_connectivity
from datasets.superpixels.slic_iterate import slic_image
from datasets.superpixels.slic_numba import _grid, nearest_seed_map, prepare_features, slic_grid


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return transform.resize(data.astronaut(), (96, 80), anti_aliasing=True).astype(np.float32)


def _slic_image(image: np.ndarray, k: int, max_iter: int, compactness: float = 10.0):
    h, w = image.shape[:2]
    space = "lab" if image.shape[-1] == 3 else "intensity"
    feat = prepare_features(image[None], space, compactness, 0.0)[0]
    ys, xs, step, init, by, bx = _grid(h, w, k)
    out = np.empty((h, w), dtype=np.int32)
    done = slic_image(feat, init, ys, xs, by, bx, step, max_iter, out)
    return out, done


def test_two_halves_hand_made():
    # Black left half, white right half, k = 2: seeds at columns 4 and 12 of a 8 x 16 image; every
    # pixel's own seed is also the nearest centre in colour, so the split stays at column 8.
    image = np.zeros((8, 16, 3), dtype=np.float32)
    image[:, 8:] = 1.0
    labels, counts = superpixels(image, n_segments=2, compactness=10)
    expected = np.repeat(np.array([[0] * 8 + [1] * 8]), 8, axis=0)
    assert counts.tolist() == [2] and np.array_equal(labels[0], expected)


def test_uniform_image_stops_early_with_the_full_result():
    # A flat image: centres settle on their cells' means after one update and never move again.
    image = np.full((32, 32, 1), 0.5, dtype=np.float32)
    full, _ = _slic_image(image, 16, 1)
    labels, done = _slic_image(image, 16, 10)
    assert done < 10
    assert np.array_equal(labels, full)


def test_one_iteration_is_the_nearest_seed_map(rgb):
    labels, done = _slic_image(rgb, 50, 1)
    ys, xs, _ = slic_grid(*rgb.shape[:2], 50)
    assert done == 1 and np.array_equal(labels, nearest_seed_map(*rgb.shape[:2], ys, xs))


@pytest.mark.parametrize("shape", [(3, 3), (5, 300), (17, 33), (64, 64), (97, 40)])
@pytest.mark.parametrize("k", [1, 7, 100])
@pytest.mark.parametrize("channels", [1, 3])
def test_labels_consecutive_connected_real_counts(shape, k, channels):
    image = np.random.default_rng(k).random((*shape, channels)).astype(np.float32)
    comp = 10.0 if channels == 3 else 0.1
    labels, counts = superpixels(image, n_segments=k, compactness=comp)
    assert labels.dtype == np.int32 and labels.shape == (1, *shape)
    assert np.array_equal(np.unique(labels[0]), np.arange(counts[0]))
    assert is_connected(labels[0])
    raw, raw_counts = superpixels(image, n_segments=k, compactness=comp, enforce_connectivity=False)
    assert np.array_equal(np.unique(raw[0]), np.arange(raw_counts[0]))


def test_deterministic_and_thread_count_does_not_change_maps(rgb):
    batch = np.stack([rgb, rgb[::-1], rgb[:, ::-1], np.ascontiguousarray(rgb * 0.5)])
    one = superpixels(batch, n_segments=120, num_threads=1)
    again = superpixels(batch, n_segments=120, num_threads=1)
    every = superpixels(batch, n_segments=120, num_threads=numba.config.NUMBA_NUM_THREADS)
    for a, b in ((one, again), (one, every)):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="num_threads"):
        superpixels(batch, num_threads=0)


def test_loader_workers_run_one_thread(monkeypatch):
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    seen = engine._run_numpy_backend(lambda images, **p: numba.get_num_threads(), None, None, {})
    assert seen == 1


def test_unmasked_connectivity_fast_path_equals_general_path(rgb):
    raw, _ = superpixels(rgb, n_segments=150, enforce_connectivity=False)
    for sizes in ((10, 200), (0, 10**6), (60, 120), (3, 30)):
        fast = enforce_connectivity(raw, *sizes)
        general = enforce_connectivity(raw, *sizes, mask=np.ones_like(raw, dtype=bool))
        assert np.array_equal(fast[0], general[0]) and np.array_equal(fast[1], general[1])


def test_features_match_skimage_lab(rgb):
    rng = np.random.default_rng(0)
    images = np.stack([rgb, rng.random(rgb.shape).astype(np.float32)])
    images[1, 0, 0], images[1, 0, 1] = 0.0, 1.0  # full range: the stretch is the identity
    feats = slic_features(images, True, 1.0, pad=16)
    assert feats.shape == (2, 3, 96, 96) and not feats[..., 80:].any()
    for img, f in zip(images, feats, strict=True):
        ref = color.rgb2lab((img - img.min()) / (img.max() - img.min()))
        assert np.abs(np.moveaxis(f[..., :80], 0, -1) - ref).max() < 1e-3


def test_non_finite_input_is_rejected():
    image = np.zeros((8, 8), dtype=np.float32)
    image[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        superpixels(image)


def test_raw_maps_of_a_batch_are_compacted_alike_on_any_thread_count(rgb):
    # Without connectivity the ids are compacted per image; the parallel and serial loops must agree.
    batch = np.stack([rgb, rgb[::-1], np.ascontiguousarray(rgb * 0.5)])
    one = superpixels(batch, n_segments=120, enforce_connectivity=False, num_threads=1)
    every = superpixels(
        batch, n_segments=120, enforce_connectivity=False, num_threads=numba.config.NUMBA_NUM_THREADS
    )
    assert np.array_equal(one[0], every[0]) and np.array_equal(one[1], every[1])
    for labels, count in zip(*every, strict=True):
        assert np.array_equal(np.unique(labels), np.arange(count))
