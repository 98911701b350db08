"""Train then test (or test only) any task of the framework from YAML configs.

Usage:
    python run.py --cfg configs/demo.yaml [--cfg more.yaml] [--trainer.max_epochs 5] [--data.batch_size 4]
    python run.py --cfg configs/demo.yaml --evaluate --ckpt runs/demo/version_0/checkpoints/last.ckpt
    python run.py --cfg configs/demo.yaml --resume last        # continue the newest interrupted run
    python run.py --cfg configs/demo.yaml --evaluate --ckpt CKPT --export safetensors   # share weights
"""

from __future__ import annotations

import json
import sys
from typing import Any

from core.checkpoint_io import UnsafeCheckpointError
from engine.cli import FrameworkCLI, translate_argv


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse configs, fit, then test the best checkpoint (or only test with ``--evaluate``).

    Args:
        argv: Command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        ``{"run_dir", "best_ckpt", "test"}`` where ``test`` is the test summary (means over images).
    """
    cli = FrameworkCLI(args=translate_argv(sys.argv[1:] if argv is None else argv))
    return cli.execute()


def cli_main() -> int:
    """``python run.py``: run, print the result; a refused checkpoint is one line on stderr, exit 2."""
    try:
        result = main()
    except UnsafeCheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    shown = {k: result[k] for k in ("run_dir", "test", "exported") if k in result}
    print(json.dumps(shown, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
