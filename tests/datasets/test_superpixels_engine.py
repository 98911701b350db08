"""Behaviour of the superpixel engine: label conventions, backends, masks, connectivity, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import color, data, transform
from skimage.util import regular_grid

from datasets.superpixels import (
    body_mask,
    connected_components,
    enforce_connectivity,
    is_connected,
    resolve_params,
    superpixels,
)
from datasets.superpixels.colour import rgb_to_lab
from datasets.superpixels.slic_numba import slic_grid
from datasets.superpixels.slic_torch import rgb_to_lab_torch

SAMPLE_CT = Path(__file__).resolve().parents[2] / "datasets" / "sample" / "abdomen_ct" / "test"
SLIC_BACKENDS = ("skimage", "numba", "torch")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return transform.resize(data.astronaut(), (64, 64), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    return transform.resize(data.camera(), (64, 64), anti_aliasing=True).astype(np.float32)


def run(backend: str, images: np.ndarray, mask=None, **params):
    """Call the engine with numpy [B, H, W, C] images, converting for the torch backend."""
    if backend == "torch":
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        m = None if mask is None else torch.from_numpy(mask)
        labels, counts = superpixels(x, backend="torch", mask=m, **params)
        assert labels.dtype == torch.int32 and labels.device == x.device
        return labels.numpy(), counts.numpy()
    labels, counts = superpixels(images, backend=backend, mask=mask, **params)
    assert labels.dtype == np.int32
    return labels, counts


@pytest.mark.parametrize("backend", SLIC_BACKENDS)
@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_labels_consecutive_from_zero_and_counts(backend, kind, rgb, grey):
    image = rgb if kind == "rgb" else grey[..., None]
    params = {"n_segments": 60} if kind == "rgb" else {"n_segments": 60, "compactness": 0.1}
    labels, counts = run(backend, image[None], **params)
    assert labels.shape == (1, 64, 64)
    assert np.array_equal(np.unique(labels[0]), np.arange(counts[0]))
    # A 64x64 image at k=60 has an 8x8 seed grid; connectivity can only lower the count a little.
    assert 30 <= counts[0] <= 80


@pytest.mark.parametrize("backend", SLIC_BACKENDS)
def test_connectivity_enforced_maps_are_connected(backend, rgb, grey):
    for image, comp in ((rgb, 10.0), (grey[..., None], 0.05)):
        labels, counts = run(backend, image[None], n_segments=100, compactness=comp)
        per_label = is_connected(labels[0], per_label=True)
        assert len(per_label) == counts[0] and all(per_label.values())


def test_first_assignment_matches_skimage_grid_exactly(rgb):
    # One iteration without connectivity is the nearest-seed map: it checks grid start, step, order.
    maps = [
        run(b, rgb[None], n_segments=37, max_iter=1, enforce_connectivity=False)[0] for b in SLIC_BACKENDS
    ]
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[0], maps[2])


@pytest.mark.parametrize("shape", [(64, 64), (40, 97), (5, 300), (3, 3)])
@pytest.mark.parametrize("k", [1, 17, 100, 5000])
def test_slic_grid_matches_skimage_regular_grid(shape, k):
    ys, xs, step = slic_grid(*shape, k)
    sl = regular_grid((1, *shape), k)
    assert np.array_equal(ys, np.arange(shape[0])[sl[1]])
    assert np.array_equal(xs, np.arange(shape[1])[sl[2]])
    assert step == max(float(s.step or 1) for s in sl)


def test_input_forms_and_integer_scaling(grey):
    u8 = (grey * 255).round().astype(np.uint8)
    ref, _ = superpixels(u8.astype(np.float32) / 255, n_segments=30, compactness=0.1)
    for x in (u8, u8[..., None], u8[None], u8[None, ..., None]):
        labels, counts = superpixels(x, n_segments=30, compactness=0.1)
        assert labels.shape == (1, 64, 64) and np.array_equal(labels, ref)
    u16 = u8.astype(np.uint16) * 257  # the same intensities on the uint16 scale
    assert np.array_equal(superpixels(u16, n_segments=30, compactness=0.1)[0], ref)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_mixed_batch_equals_images_alone(backend, rgb):
    rng = np.random.default_rng(0)
    half = np.zeros_like(rgb)
    half[:, 32:] = 1.0
    batch = np.stack([rgb, np.full_like(rgb, 0.5), rng.random(rgb.shape).astype(np.float32), half])
    labels, counts = run(backend, batch, n_segments=50)
    for i in range(len(batch)):
        alone, n = run(backend, batch[i : i + 1], n_segments=50)
        assert np.array_equal(labels[i], alone[0]) and counts[i] == n[0]
        assert np.array_equal(np.unique(labels[i]), np.arange(counts[i]))
    # The half-black image must keep its edge: no segment crosses column 32.
    assert not set(np.unique(labels[3][:, :32])) & set(np.unique(labels[3][:, 32:]))


@pytest.mark.parametrize("backend", ["numba", "torch", "skimage"])
def test_deterministic(backend, rgb):
    a = run(backend, rgb[None], n_segments=80)
    b = run(backend, rgb[None], n_segments=80)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("backend", SLIC_BACKENDS)
def test_slic_inside_mask_labels_one_to_n(backend, grey):
    mask = np.zeros((1, 64, 64), dtype=bool)
    mask[0, 10:50, 5:40] = True
    labels, counts = run(backend, grey[None, ..., None], mask=mask, n_segments=60, compactness=0.1)
    assert (labels[~mask] == 0).all() and (labels[mask] > 0).all()
    assert np.array_equal(np.unique(labels), np.arange(counts[0] + 1))
    inside = np.where(mask[0], labels[0], -1)
    assert all(v for k, v in is_connected(inside, per_label=True).items() if k > 0)


def _ct_slice_or_camera() -> np.ndarray:
    files = sorted((SAMPLE_CT / "images").glob("*.png")) if SAMPLE_CT.is_dir() else []
    if files:
        from PIL import Image

        return np.asarray(Image.open(files[0]), dtype=np.float32) / 255.0
    return transform.resize(data.camera(), (128, 128), anti_aliasing=True).astype(np.float32)


def test_felzenszwalb_alpnet_settings_in_body_mask():
    image = _ct_slice_or_camera()
    mask = body_mask(image)
    assert 0.05 < mask.mean() < 0.95
    labels, counts = superpixels(image, method="felzenszwalb", backend="skimage", mask=mask)
    assert resolve_params("felzenszwalb", "skimage") == {"scale": 1.0, "sigma": 1.0, "min_size": 400}
    assert (labels[0][~mask] == 0).all() and (labels[0][mask] > 0).all()
    assert np.array_equal(np.unique(labels[0]), np.arange(counts[0] + 1)) and counts[0] >= 2


def test_body_mask_largest_component_with_holes_filled():
    image = np.zeros((40, 40), dtype=np.float32)
    yy, xx = np.mgrid[:40, :40]
    image[(yy - 20) ** 2 + (xx - 18) ** 2 < 12**2] = 0.8
    image[18:22, 16:20] = 0.0  # a hole inside the body
    image[2:5, 35:38] = 0.9  # a small separate bright blob
    mask = body_mask(image)
    assert mask[20, 18] and mask[19, 17]  # hole filled
    assert not mask[3, 36]  # blob dropped
    assert mask.sum() == ((yy - 20) ** 2 + (xx - 18) ** 2 < 12**2).sum()
    assert not body_mask(np.ones((8, 8))).any()
    assert body_mask(image, threshold=0.85).sum() == 9  # only the blob is above 0.85


def test_enforce_connectivity_hand_made():
    labels = np.array(
        [
            [0, 0, 1, 1, 0],
            [0, 0, 1, 1, 0],
            [2, 2, 2, 2, 2],
            [2, 2, 2, 2, 3],
        ]
    )
    out, counts = enforce_connectivity(labels, min_size=0)
    # Label 0 is two pieces: four segments become five, numbered in raster order.
    assert counts[0] == 5 and out[0, 4] == 2 and out[3, 4] == 4
    out, counts = enforce_connectivity(labels, min_size=3)
    # The 2-pixel right piece of 0 and the single 3 are absorbed; both join an adjacent segment.
    assert counts[0] == 3 and out[0, 4] in (1, 2) and out[3, 4] == out[2, 4]
    out, counts = enforce_connectivity(np.zeros((4, 4), int), min_size=0, max_size=5)
    assert counts[0] == 4 and np.bincount(out.ravel()).max() <= 5
    assert all(is_connected(np.where(out >= 0, out, -1), per_label=True).values())
    mask = labels != 2
    out, counts = enforce_connectivity(labels, min_size=0, mask=mask)
    assert (out[~mask] == -1).all() and counts[0] == 4
    comp, n = connected_components(labels, 8)
    assert n == 5 and comp[0, 0] != comp[0, 4]
    diagonal = np.array([[0, 1], [1, 0]])
    assert connected_components(diagonal, 4)[1] == 4 and connected_components(diagonal, 8)[1] == 2


def test_lab_conversions_match_skimage(rgb):
    ref = color.rgb2lab(rgb.astype(np.float64))
    assert np.abs(rgb_to_lab(rgb) - ref).max() < 2e-3
    lab_t = rgb_to_lab_torch(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(lab_t - ref).max() < 2e-3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "watershed"}, "unknown method 'watershed'.*slic"),
        ({"backend": "opencv"}, "unknown backend 'opencv'.*numba"),
        ({"n_segment": 10}, r"unknown parameter\(s\) \['n_segment'\].*n_segments"),
        ({"n_segments": 0}, "n_segments=0"),
        ({"n_segments": 2.5}, "n_segments=2.5"),
        ({"compactness": 0}, "compactness=0"),
        ({"max_iter": 0}, "max_iter=0"),
        ({"colour_space": "hsv"}, "colour_space='hsv'"),
        ({"colour_space": "lab"}, "needs 3 channels"),
        ({"enforce_connectivity": 1}, "enforce_connectivity=1"),
        (
            {"method": "felzenszwalb", "backend": "numba"},
            "unknown backend 'numba'.*Valid: skimage for method 'felzenszwalb'",
        ),
        ({"method": "felzenszwalb", "backend": "skimage", "n_segments": 5}, "min_size"),
    ],
)
def test_bad_parameters_raise(grey, kwargs, match):
    with pytest.raises(ValueError, match=match):
        superpixels(grey, **kwargs)


def test_bad_inputs_raise(grey):
    with pytest.raises(ValueError, match="empty"):
        superpixels(np.zeros((0, 8)))
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        superpixels(np.zeros((1, 1, 8, 8, 3)))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        superpixels(np.zeros((2, 8, 8, 4)))
    with pytest.raises(ValueError, match="mask shape"):
        superpixels(grey, mask=np.ones((32, 32), bool))
    with pytest.raises(TypeError, match="backend='torch'"):
        superpixels(torch.zeros(1, 1, 8, 8))
    with pytest.raises(TypeError, match="torch tensor"):
        superpixels(grey, backend="torch")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        superpixels(torch.zeros(1, 8, 8), backend="torch")
    with pytest.raises(ValueError, match="NaN"):
        superpixels(np.full((8, 8), np.nan, np.float32))
    with pytest.raises(TypeError, match="int64"):
        superpixels(np.zeros((8, 8), np.int64))
