"""One entry point for every superpixel algorithm: ``superpixels(images, method, backend, ...)``.

Backends live in a registry keyed by ``method/backend``; parameters are checked against the
method's defaults so a misspelt name fails loudly. All backends share the input conventions and
return consecutive labels from 0 (or 1..N inside a mask, 0 outside) with the real segment count.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from core.registry import Registry, unknown_name_message
from datasets.superpixels.body_mask import body_mask
from datasets.superpixels.colour import to_unit_float
from datasets.superpixels.connectivity import enforce_connectivity
from datasets.superpixels.slic_numba import connectivity_sizes, expected_segment_size, slic_numba
from datasets.superpixels.slic_skimage import felzenszwalb_skimage, slic_skimage

# Defaults per method. SLIC follows skimage's meaning of every parameter (min_size_factor default
# differs: skimage uses 0.5). Felzenszwalb defaults are SSL-ALPNet's pseudolabel settings.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "slic": {
        "n_segments": 512,
        "compactness": 10.0,
        "max_iter": 10,
        "sigma": 0.0,
        "colour_space": "auto",
        "enforce_connectivity": True,
        "min_size_factor": 0.25,
        "max_size_factor": 3.0,
    },
    "felzenszwalb": {"scale": 1.0, "sigma": 1.0, "min_size": 400},
}
COLOUR_SPACES = ("auto", "lab", "intensity")


def _slic_torch(images, mask=None, **params):
    # Imported on use: CPU-only callers should not pay for importing torch.
    from datasets.superpixels.slic_torch import slic_torch

    return slic_torch(images, mask=mask, **params)


# "method/backend" -> function, with its input kind as metadata. "numpy" backends take float
# [B, H, W, C] arrays and leave the mask to the engine; "torch" backends take [B, C, H, W] tensors
# and the mask themselves.
BACKENDS: Registry[Callable] = Registry("superpixel backend")
BACKENDS.register("slic/skimage", slic_skimage, kind="numpy")
# map_version: bumped whenever a backend's maps change for the same parameters, so that caches keyed by
# it (see backend_map_version) do not return maps of the old code. numba 2: 3x3 Voronoi-cell candidates
# and polynomial Lab (the maps moved slightly; quality unchanged within the gate). numba 3: distances
# relative to the cell's own centre and the minimum on integer keys (ties to 2^-19 relative go to
# the lower centre index): ~0.03% of pixels moved.
BACKENDS.register("slic/numba", slic_numba, kind="numpy", map_version=3)
BACKENDS.register("slic/torch", _slic_torch, kind="torch")
BACKENDS.register("felzenszwalb/skimage", felzenszwalb_skimage, kind="numpy")


def register_backend(method: str, backend: str, fn: Callable, kind: str = "numpy") -> None:
    """Add a backend (``fn(images, **params) -> (labels, counts)``) for ``method``.

    Raises:
        ValueError: for an unknown method or kind, or a name already taken.
    """
    if method not in METHOD_DEFAULTS:
        raise ValueError(f"register_backend: unknown method {method!r}; known: {sorted(METHOD_DEFAULTS)}")
    if kind not in ("numpy", "torch"):
        raise ValueError(f"register_backend: kind must be 'numpy' or 'torch', got {kind!r}")
    BACKENDS.register(f"{method}/{backend}", fn, kind=kind)


def backend_map_version(method: str, backend: str) -> int:
    """Version of the maps ``method/backend`` produces (1 unless the backend registered another)."""
    return int(BACKENDS.meta(f"{method}/{backend}").get("map_version", 1))


def available_backends(method: str | None = None) -> list[str]:
    """Backends registered for ``method`` (all backends when None)."""
    pairs = [name.split("/") for name in BACKENDS.names()]
    return sorted({b for m, b in pairs if method is None or m == method})


def resolve_params(method: str, backend: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check method, backend and parameter names and fill in the defaults (a JSON-able dict).

    Args:
        method: "slic" or "felzenszwalb".
        backend: a registered backend for the method.
        params: the caller's parameters (may be empty).

    Returns:
        All parameters of the method, with plain Python types.

    Raises:
        ValueError: unknown method, backend or parameter, or an out-of-range value.
    """
    if method not in METHOD_DEFAULTS:
        raise ValueError(f"superpixels: unknown method {method!r}; valid methods: {sorted(METHOD_DEFAULTS)}")
    if f"{method}/{backend}" not in BACKENDS:
        hint = ""
        if backend in available_backends():
            hint = f" (backend {backend!r} does not implement {method!r})"
        raise ValueError(
            f"superpixels: {unknown_name_message('backend', backend, available_backends(method))}"
            f" for method {method!r}{hint}"
        )
    defaults = METHOD_DEFAULTS[method]
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise ValueError(
            f"superpixels: unknown parameter(s) {unknown} for method {method!r}; valid: {sorted(defaults)}"
        )
    out = {
        key: _coerce(method, key, value, defaults[key])
        for key, value in {**defaults, **(params or {})}.items()
    }
    _check_ranges(method, out)
    return out


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    # Plain Python types (JSON-able cache keys); integral floats such as 512.0 are accepted for ints.
    bad = ValueError(
        f"superpixels: {method} parameter {key}={value!r} has the wrong type; expected "
        f"{type(default).__name__}"
    )
    if isinstance(default, bool):
        if not isinstance(value, bool | np.bool_):
            raise bad
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise bad
        if float(value) != int(value):
            raise bad
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise bad
        return float(value)
    if not isinstance(value, str):
        raise bad
    return value


def _check_ranges(method: str, p: dict[str, Any]) -> None:
    rules = {
        "n_segments": (lambda v: v >= 1, ">= 1"),
        "compactness": (lambda v: v > 0, "> 0"),
        "max_iter": (lambda v: v >= 1, ">= 1"),
        "sigma": (lambda v: v >= 0, ">= 0"),
        "min_size_factor": (lambda v: v >= 0, ">= 0"),
        "max_size_factor": (lambda v: v > 0, "> 0"),
        "scale": (lambda v: v > 0, "> 0"),
        "min_size": (lambda v: v >= 0, ">= 0"),
        "colour_space": (lambda v: v in COLOUR_SPACES, f"one of {COLOUR_SPACES}"),
        "enforce_connectivity": (lambda v: isinstance(v, bool), "a bool"),
    }
    for key, value in p.items():
        ok, expected = rules[key]
        if not ok(value):
            raise ValueError(
                f"superpixels: {method} parameter {key}={value!r} is invalid; expected {expected}"
            )


def _as_numpy_batch(images: Any) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(
            f"superpixels: CPU backends take numpy arrays, got {type(images).__name__}; "
            "use backend='torch' for tensors (or pass tensor.cpu().numpy())"
        )
    if images.size == 0:
        raise ValueError(f"superpixels: empty images of shape {images.shape}")
    x = images
    if x.ndim == 2:
        x = x[None, ..., None]
    elif x.ndim == 3:
        # [H, W, C] when the last axis looks like channels, else a batch of grey [B, H, W].
        x = x[None] if x.shape[-1] in (1, 3) else x[..., None]
    elif x.ndim != 4:
        raise ValueError(
            f"superpixels: images must be [H,W], [H,W,C], [B,H,W] or [B,H,W,C], got {images.shape}"
        )
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"superpixels: images need 1 or 3 channels (last axis), got shape {images.shape}")
    return np.ascontiguousarray(to_unit_float(x))


def _check_torch_batch(images: Any):
    import torch

    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"superpixels: backend 'torch' takes a torch tensor [B,C,H,W], got {type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"superpixels: backend 'torch' needs [B, C, H, W] with C in {{1, 3}}, got {tuple(images.shape)}"
        )
    if images.numel() == 0:
        raise ValueError(f"superpixels: empty images of shape {tuple(images.shape)}")
    return images


def _check_mask(mask: Any, batch_shape: tuple[int, int, int]) -> Any:
    m = mask
    if m.ndim == 2:
        m = m[None]
    if tuple(m.shape) != batch_shape:
        raise ValueError(
            f"superpixels: mask shape {tuple(mask.shape)} does not match images [B, H, W] = {batch_shape}"
        )
    return m


def _mask_numpy(labels: np.ndarray, mask: np.ndarray, method: str, p: dict[str, Any]):
    # Inside the mask: connected pieces (SLIC with enforce_connectivity) or the plain intersection
    # (ALPNet's felzenszwalb pseudolabels), numbered 1..N; outside 0.
    if method == "slic" and p["enforce_connectivity"]:
        seg = expected_segment_size(labels.shape[1], labels.shape[2], p["n_segments"])
        sizes = connectivity_sizes(seg, p["min_size_factor"], p["max_size_factor"])
        out, counts = enforce_connectivity(labels, *sizes, mask=mask)
        return np.where(mask, out + 1, 0).astype(np.int32), counts
    out = np.zeros_like(labels)
    counts = np.zeros(labels.shape[0], dtype=np.int64)
    for i in range(labels.shape[0]):
        uniq, inv = np.unique(labels[i][mask[i]], return_inverse=True)
        out[i][mask[i]] = inv.ravel() + 1
        counts[i] = uniq.size
    return out, counts


def _in_loader_worker() -> bool:
    # torch is imported only if the caller already uses it (CPU-only callers never pay for it).
    data = sys.modules.get("torch.utils.data")
    return data is not None and data.get_worker_info() is not None


def _run_numpy_backend(fn: Callable, images: np.ndarray, num_threads: int | None, p: dict[str, Any]):
    # Images of a batch run in parallel over numba threads: num_threads of them (None: numba's current
    # setting, all cores by default, but one inside a DataLoader worker so that workers x threads does
    # not oversubscribe the CPU).
    import numba

    if num_threads is None:
        num_threads = 1 if _in_loader_worker() else numba.get_num_threads()
    if not 1 <= num_threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"superpixels: num_threads={num_threads} is invalid; expected 1..{numba.config.NUMBA_NUM_THREADS}"
        )
    before = numba.get_num_threads()
    numba.set_num_threads(num_threads)
    try:
        return fn(images, **p)
    finally:
        numba.set_num_threads(before)


def superpixels(
    images: Any,
    method: str = "slic",
    backend: str = "numba",
    mask: Any = None,
    num_threads: int | None = None,
    **params: Any,
) -> tuple[Any, Any]:
    """Compute superpixel label maps for one image or a batch.

    Args:
        images: CPU backends: numpy ``[H,W]``, ``[H,W,C]``, ``[B,H,W]`` or ``[B,H,W,C]`` with C in
            {1, 3} (a 3-D array whose last axis is 1 or 3 is one image). Backend ``torch``: a tensor
            ``[B,C,H,W]`` on any device. Floats are taken as [0, 1], uint8/uint16 are scaled to it.
            SLIC stretches each image to [0, 1] first (as skimage does). As in skimage, grey images
            use the raw stretched intensity, so compactness 10 gives an almost regular grid there;
            about 0.1 plays the role that 10 plays for Lab.
        method: "slic" or "felzenszwalb".
        backend: "numba" (default, fast CPU), "skimage" (reference) or "torch" (batched, SLIC
            only); felzenszwalb exists for "skimage" only.
        mask: optional bool foreground ``[B,H,W]`` (or ``[H,W]``): outside 0, inside 1..N.
        num_threads: CPU threads over which the images of a batch run (numba backend; each image
            runs on one thread, the result does not depend on it). None: numba's current setting
            (all cores unless ``numba.set_num_threads`` lowered it), one inside a DataLoader worker.
        **params: SLIC: n_segments (k), compactness, max_iter, sigma, colour_space ("auto": Lab
            for 3 channels, intensity for 1), enforce_connectivity, min_size_factor,
            max_size_factor. Felzenszwalb: scale, sigma, min_size.

    Returns:
        ``(labels, counts)``: int32 labels ``[B,H,W]`` numbered consecutively from 0 (from 1 inside
        a mask) and the real segment count per image ``[B]`` (int64). numpy for CPU backends,
        tensors on the input's device for "torch".

    Raises:
        ValueError: unknown method/backend/parameter, bad values, wrong shapes, empty images,
            Lab requested for grey images.
        TypeError: array type or dtype not accepted by the backend.
    """
    p = resolve_params(method, backend, params)
    fn, kind = BACKENDS.get(f"{method}/{backend}"), BACKENDS.meta(f"{method}/{backend}")["kind"]
    if kind == "torch":
        images = _check_torch_batch(images)
        channels = int(images.shape[1])
        b, h, w = images.shape[0], images.shape[2], images.shape[3]
    else:
        images = _as_numpy_batch(images)
        b, h, w, channels = images.shape
    if method == "slic":
        if p["colour_space"] == "auto":
            p["colour_space"] = "lab" if channels == 3 else "intensity"
        elif p["colour_space"] == "lab" and channels != 3:
            raise ValueError(f"superpixels: colour_space='lab' needs 3 channels, got {channels}")
    if mask is not None:
        mask = _check_mask(mask, (b, h, w))
    if kind == "torch":
        if isinstance(mask, np.ndarray):
            import torch

            mask = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))
        return fn(images, mask=mask, **p)
    labels, counts = _run_numpy_backend(fn, images, num_threads, p)
    if mask is not None:
        labels, counts = _mask_numpy(labels, np.asarray(mask, dtype=bool), method, p)
    return labels, counts


def warmup() -> None:
    """Compile (or load from numba's on-disk cache) every numba kernel on tiny grey and RGB images.

    Batches of one and of two images: single images take the serial kernels, batches the parallel
    ones (when numba has more than one thread).
    """
    rng = np.random.default_rng(0)
    grey = rng.random((2, 16, 16)).astype(np.float32)
    rgb = rng.random((2, 16, 16, 3)).astype(np.float32)
    mask = np.zeros((2, 16, 16), dtype=bool)
    mask[:, 4:12, 4:12] = True
    for n in (1, 2):
        for conn in (True, False):
            superpixels(grey[:n], n_segments=8, enforce_connectivity=conn, mask=mask[:n])
            superpixels(rgb[:n], n_segments=8, enforce_connectivity=conn)


__all__ = [
    "BACKENDS",
    "METHOD_DEFAULTS",
    "available_backends",
    "body_mask",
    "register_backend",
    "resolve_params",
    "superpixels",
    "warmup",
]
