"""CLI: ``python -m datasets.volumes acdc|sabs|chaos|nifti|dicom --src SRC --out OUT [options]``.

Each subcommand writes the prepared layout (README, "Prepared volumes") and has its own ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import run_entry_point
from datasets.volumes.challenges import prepare_acdc, prepare_chaos, prepare_sabs
from datasets.volumes.label_maps import LABEL_MAPS, label_map
from datasets.volumes.prepare import (
    NO_WINDOW,
    PairOptions,
    prepare_dicom,
    prepare_nifti_file,
    prepare_nifti_folder,
)

KEEP_SOURCE_IDS = "source"


def _pair_options(a: argparse.Namespace) -> PairOptions:
    source = label_map(a.label_map)
    target = source if a.target_map == KEEP_SOURCE_IDS else label_map(a.target_map)
    return PairOptions(source, target, a.target_spacing_mm, a.size)


def _window(a: argparse.Namespace) -> list[float] | str | None:
    return NO_WINDOW if a.no_window else a.window


def _nifti(a: argparse.Namespace) -> Path:
    src, options = Path(a.src), _pair_options(a)
    if src.is_dir():
        if a.label or a.scan_id:
            raise ValueError(f"nifti: --label and --scan_id are for one image file; {src} is a folder")
        return prepare_nifti_folder(src, a.out, options, a.modality, _window(a))
    if not src.is_file():
        raise FileNotFoundError(
            f"nifti: --src {src} does not exist (expected a .nii/.nii.gz file or a folder)"
        )
    return prepare_nifti_file(src, a.out, options, a.modality, a.label, a.scan_id, _window(a))


def _dicom(a: argparse.Namespace) -> Path:
    if a.out.endswith((".nii", ".nii.gz")):
        raise ValueError(
            f"dicom: --out {a.out} is a file name; expected the prepared folder to write the scan into"
        )
    options = _pair_options(a)
    return prepare_dicom(a.src, a.out, options, a.label, a.series, a.modality, a.scan_id, _window(a))


def _add_pair_options(p: argparse.ArgumentParser) -> None:
    names = ", ".join(LABEL_MAPS.names())
    p.add_argument(
        "--label", help="Label volume (NIfTI) on the image's grid, e.g. TotalSegmentator's output."
    )
    p.add_argument("--scan_id", help="Scan id in the prepared folder (default: the file's or folder's name).")
    p.add_argument("--label_map", default="sample", help=f"Ids of the label files: {names}, a JSON file "
                   "or inline JSON {name: source_id} (default: sample).")  # fmt: skip
    p.add_argument("--target_map", default="sample", help="Ids written (same choices; 'source' keeps the "
                   "label files' ids); other ids become background, counted (default: sample).")  # fmt: skip
    p.add_argument("--target_spacing_mm", type=float, help="Resample in-plane to this spacing first.")
    p.add_argument("--size", type=int, help="Then centre crop/pad in-plane to SIZE x SIZE (no resizing).")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--window", type=float, nargs=2, metavar=("LOW", "HIGH"),
                       help="Intensity window of this modality, recorded in the manifest.")  # fmt: skip
    group.add_argument("--no_window", action="store_true", help="Record that this modality has no window.")


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subparser (with its own ``--help``) per dataset layout."""
    parser = argparse.ArgumentParser(prog="python -m datasets.volumes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{acdc,chaos,dicom,nifti,sabs}")
    specs = {
        "acdc": ("ACDC: SRC/patientXXX/patientXXX_frameYY[_gt].nii.gz (MR).", "The ACDC folder."),
        "chaos": ("CHAOS-T2 SPIR: SRC/<pid>/T2SPIR/{DICOM_anon,Ground} (MR).", "The CHAOS MR folder."),
        "sabs": (
            "SABS/Synapse: SRC/img/img<id>.nii.gz + SRC/label/label<id>.nii.gz (CT, window [-125, 275]).",
            "The folder holding img/ and label/.",
        ),
        "nifti": (
            "A NIfTI image (with --label) or a folder SRC/images/<id>.nii.gz + SRC/labels/<id>.nii.gz.",
            "A .nii/.nii.gz image, or a folder holding images/ and labels/.",
        ),
        "dicom": (
            "One DICOM series folder (with an optional NIfTI --label) into the prepared folder OUT.",
            "The DICOM series folder.",
        ),
    }
    for name, (text, src_help) in specs.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--src", required=True, help=src_help)
        p.add_argument("--out", required=True, help="The prepared folder (scans are added to it).")
        if name in ("chaos", "sabs"):
            p.add_argument("--size", type=int, default=256, help="In-plane size (default 256).")
        if name == "nifti":
            p.add_argument(
                "--modality", required=True, type=str.upper, help="CT, MR, ... (windows are per modality)."
            )
        if name == "dicom":
            p.add_argument("--series", help="SeriesInstanceUID, when the folder holds several series.")
            p.add_argument("--modality", type=str.upper, help="Default: the series' Modality tag.")
        if name in ("nifti", "dicom"):
            _add_pair_options(p)
    return parser


COMMANDS = {
    "acdc": lambda a: prepare_acdc(a.src, a.out),
    "chaos": lambda a: prepare_chaos(a.src, a.out, size=a.size),
    "sabs": lambda a: prepare_sabs(a.src, a.out, size=a.size),
    "nifti": _nifti,
    "dicom": _dicom,
}


def main(argv: list[str] | None = None) -> str:
    """Parse arguments and run one preparation; returns (and prints) the prepared folder."""
    args = build_parser().parse_args(argv)
    out = str(COMMANDS[args.command](args))
    print(out)
    return out


if __name__ == "__main__":
    sys.exit(run_entry_point("python -m datasets.volumes", main))
