"""CLI: ``python -m datasets.volumes chaos|sabs|acdc|nifti|dicom --src SRC --out OUT``."""

from __future__ import annotations

import argparse
import sys

from core.errors import run_entry_point
from datasets.volumes.io import dicom_series_to_nifti
from datasets.volumes.prepare import (
    label_map,
    prepare_acdc,
    prepare_chaos,
    prepare_nifti_folder,
    prepare_sabs,
)

COMMANDS = {
    "chaos": lambda a: prepare_chaos(a.src, a.out, size=a.size),
    "sabs": lambda a: prepare_sabs(a.src, a.out, size=a.size),
    "acdc": lambda a: prepare_acdc(a.src, a.out),
    "nifti": lambda a: prepare_nifti_folder(a.src, a.out, label_map(a.label_map)),
    "dicom": lambda a: dicom_series_to_nifti(a.src, a.out),
}


def main(argv: list[str] | None = None) -> str:
    """Parse arguments and run one preparation; returns the output path."""
    parser = argparse.ArgumentParser(prog="python -m datasets.volumes", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--src", required=True, help="Dataset folder (dicom: the series folder).")
    parser.add_argument("--out", required=True, help="Prepared folder (dicom: the .nii.gz file).")
    parser.add_argument("--size", type=int, default=256, help="In-plane size (chaos, sabs).")
    parser.add_argument(
        "--label_map", default="sample", help="nifti: registered map name or JSON {name: id}."
    )
    args = parser.parse_args(argv)
    out = str(COMMANDS[args.command](args))
    print(out)
    return out


if __name__ == "__main__":
    sys.exit(run_entry_point("python -m datasets.volumes", main))
