"""Command-line/config option handling of ``sp_generation.py``: ``--cfg`` files merged with flags.

Explicit flags win over values read from ``data.init_args`` of the config files; the result is one
:class:`GenerationOptions` that :func:`datasets.superpixels.generation.main` runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets.records import SPLIT_NAMES


def default_workers() -> int:
    """Number of CPU processes used when ``--workers`` is not given."""
    return os.cpu_count() or 1


@dataclass
class GenerationOptions:
    """Resolved command-line/config settings of one generation run."""

    root: Path
    layout: str | None
    splits: list[str]
    cache_dir: Path
    method: str
    backend: str
    params: dict[str, Any]
    shape: tuple[int, int]
    channels: int
    body_mask: bool
    workers: int
    device: str
    batch: int
    verify: bool


def load_config_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Read config files (with their ``base:`` files) and deep-merge them, a later file winning.

    Raises:
        FileNotFoundError: If a file is missing.
        ValueError: If a file does not hold a YAML mapping.
    """
    from core.config_stack import load_config_stack

    return load_config_stack(list(paths))


def data_settings(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Pick root, layout, image_size, in_channels and the superpixel section out of a run config.

    Args:
        config: Merged run config (``data.init_args.*``; a ``data`` mapping without ``init_args``
            is read directly).
        source: Names the config files in error messages.

    Returns:
        Dict with keys ``root``, ``layout``, ``image_size``, ``in_channels``, ``superpixels``
        (a :class:`SuperpixelConfig`).

    Raises:
        ValueError: If ``data.init_args.superpixels`` is absent or has unknown keys.
    """
    from datasets.superpixels.config import SuperpixelConfig

    data = config.get("data") or {}
    args = data.get("init_args", data) if isinstance(data, dict) else {}
    section = args.get("superpixels")
    if not isinstance(section, dict):
        raise ValueError(f"{source}: no data.init_args.superpixels section (a SuperpixelConfig mapping)")
    try:
        sp = SuperpixelConfig(**section)
    except TypeError as err:
        raise ValueError(f"{source}: bad data.init_args.superpixels: {err}") from err
    return {
        "root": args.get("root"),
        "layout": args.get("layout"),
        "image_size": args.get("image_size"),
        "in_channels": args.get("in_channels", 3),
        "superpixels": sp,
    }


def resolve_options(args: Any) -> GenerationOptions:
    """Combine ``--cfg`` files (if any) with explicit command-line flags (flags win).

    Args:
        args: Parsed ``sp_generation.py`` namespace.

    Returns:
        The resolved options.

    Raises:
        ValueError: If the root, the size or a parameter cannot be determined or is invalid.
    """
    from datasets.superpixels.config import as_shape
    from datasets.superpixels.loader_hook import default_cache_dir

    base: dict[str, Any] = {
        "root": None,
        "layout": None,
        "image_size": None,
        "in_channels": 3,
        "superpixels": None,
    }
    if args.cfg:
        base = data_settings(load_config_files(args.cfg), " + ".join(map(str, args.cfg)))
    sp = base["superpixels"]
    root = args.root or base["root"]
    if root is None:
        raise ValueError("no image root: pass --root IMAGES_DIR or a --cfg with data.init_args.root")
    params = dict(sp.params) if sp else {}
    params.update(_flag_params(args))
    size = args.size or ([sp.size] if sp and sp.size else None) or base["image_size"]
    if size is None:
        raise ValueError(
            "no size: pass --size N (or N_H N_W), or a --cfg with superpixels.size or data image_size"
        )
    shape = as_shape(size[0] if isinstance(size, list) and len(size) == 1 else size)
    cache_dir = args.out or (sp.cache_dir if sp and sp.cache_dir else None) or default_cache_dir(root)
    return GenerationOptions(
        root=Path(root),
        layout=args.layout or base["layout"],
        splits=list(args.split or SPLIT_NAMES),
        cache_dir=Path(cache_dir),
        method=args.method or (sp.method if sp else "slic"),
        backend=args.backend or (sp.backend if sp else "numba"),
        params=params,
        shape=shape,
        channels=int(args.channels or base["in_channels"]),
        body_mask=bool(args.body_mask or (sp.body_mask if sp else False)),
        workers=int(args.workers or default_workers()),
        device=args.device,
        batch=int(args.batch),
        verify=bool(args.verify),
    )


def _flag_params(args: Any) -> dict[str, Any]:
    import yaml

    params: dict[str, Any] = {}
    named = {"n_segments": args.k, "compactness": args.compactness, "scale": args.scale, "sigma": args.sigma}
    named["min_size"] = args.min_size
    params.update({name: value for name, value in named.items() if value is not None})
    for item in args.param or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        params[name.strip()] = yaml.safe_load(text)
    return params
