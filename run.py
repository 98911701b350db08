"""Train then test (or test only) any task of the framework from YAML configs.

Usage:
    python run.py --cfg configs/demo.yaml [--cfg more.yaml] [--trainer.max_epochs 5] [--data.batch_size 4]
    python run.py --cfg configs/demo.yaml --evaluate --ckpt runs/demo/version_0/checkpoints/last.ckpt
    python run.py --cfg configs/demo.yaml --resume last        # continue the newest interrupted run
    python run.py --cfg configs/demo.yaml --evaluate --ckpt CKPT --export safetensors   # share weights
    python run.py --export onnx --ckpt CKPT --output model.onnx     # the network for other runtimes
    python run.py ... --debug      # a user error with its traceback (default: one line on stderr, exit 2)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException

from core.errors import run_entry_point
from engine.cli import FrameworkCLI, translate_argv
from engine.export import is_export_call, run_export
from engine.predict import is_predict_call, parse_predict_args, run_prediction
from engine.run_dirs import remove_empty_run_dir

# 128 + SIGTERM, the shell's convention for a process ended by that signal.
EXIT_SIGTERM = 143


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse configs, fit, then test the best checkpoint (or only test with ``--evaluate``).

    Args:
        argv: Command-line arguments without the program name (default: ``sys.argv[1:]``).

    ``--predict`` predicts new data (:mod:`engine.predict`); ``--export FMT --ckpt CKPT --output FILE``
    only exports a checkpoint (:mod:`engine.export`).

    Returns:
        ``{"run_dir", "best_ckpt", "test"}`` where ``test`` is the test summary (means over images);
        an export alone returns ``{"exported", ...}``.
    """
    args = translate_argv(sys.argv[1:] if argv is None else argv)
    if is_predict_call(args):  # no trainer, model or data: the prediction flags alone
        return run_prediction(parse_predict_args(args))
    if is_export_call(args):
        return run_export(args)
    cli = FrameworkCLI(args=args)
    try:
        return cli.execute()
    except BaseException:
        # A start that failed before writing anything leaves no empty runs/<name>/version_N behind.
        if cli.resume_version is None:
            remove_empty_run_dir(cli.trainer.log_dir)
        raise


def _run_and_print(argv: list[str]) -> int:
    """Run ``argv`` and print the run directory, test summary and exported files as JSON.

    A run stopped by SIGTERM (its ``last.ckpt`` saved at the step boundary) exits with 143.
    """
    try:
        result = main(argv)
    except SIGTERMException:
        print("run.py: stopped by SIGTERM; last.ckpt is saved: continue with --resume last", file=sys.stderr)
        return EXIT_SIGTERM
    shown = {k: result[k] for k in ("run_dir", "test", "exported", "verified", "max_abs_diff") if k in result}
    print(json.dumps(shown, indent=2, default=str))
    return 0


def cli_main(argv: list[str] | None = None) -> int:
    """``python run.py``: run and print the result; a user error is one line on stderr, exit 2.

    Bad configs, data, paths and refused checkpoints raise ``ValueError``/``FileNotFoundError``
    naming what is wrong; ``--debug`` (or ``SPSEG_DEBUG=1``) shows the traceback instead.
    """
    return run_entry_point("run.py", _run_and_print, argv)


if __name__ == "__main__":
    sys.exit(cli_main())
