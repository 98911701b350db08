"""Run-level options that rewrite the parsed config: autoSMIM's policy names, Lightning's run root."""

from __future__ import annotations

from jsonargparse import Namespace


def apply_policy(config: Namespace, aug_k: int | None, aug_n: int | None) -> None:
    """Write autoSMIM's policy names into the keys they stand for.

    Raises:
        ValueError: When the config has no superpixel section (``aug_k``) or the model takes no
            ``n_masked`` (``aug_n``), or a value is below 1.
    """
    if aug_k is not None:
        if aug_k < 1:
            raise ValueError(f"aug_k must be >= 1, got {aug_k}")
        superpixels = config["data"]["init_args"].get("superpixels")
        if superpixels is None:
            raise ValueError(
                "aug_k sets data.init_args.superpixels.params.n_segments, but the config has no "
                "data.init_args.superpixels section"
            )
        params = dict(superpixels["params"] or {})
        params["n_segments"] = aug_k
        superpixels["params"] = params
    if aug_n is not None:
        if aug_n < 1:
            raise ValueError(f"aug_n must be >= 1, got {aug_n}")
        if "n_masked" not in config["model"]["init_args"]:
            raise ValueError(
                f"aug_n sets model.init_args.n_masked, which {config['model']['class_path']} lacks"
            )
        config["model"]["init_args"]["n_masked"] = aug_n


def reject_default_root_dir(config: Namespace) -> None:
    """Refuse ``trainer.default_root_dir``: run directories come from ``runs_dir`` and ``name``.

    Raises:
        ValueError: When ``trainer.default_root_dir`` is set.
    """
    root = config["trainer"].get("default_root_dir")
    if root is not None:
        raise ValueError(
            f"trainer.default_root_dir={root!r} is not used: runs go to <runs_dir>/<name>/version_N; "
            f"set --runs_dir {root} instead"
        )
