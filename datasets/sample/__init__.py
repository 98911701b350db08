"""The embedded real sample dataset (see README.md and NOTICE in this folder).

Layouts:
    nuclei/{train,val,test}/{images,masks}/<id>.png        binary masks 0/255
    abdomen_ct/{train,val,test}/{images,masks}/<id>.png    class-index masks 0..4
    abdomen_mr/{train,val,test}/{images,masks}/<id>.png    class-index masks 0..4
    volumes/{ct,mr}/{image,label}.nii.gz                   cropped 3D volumes + compact labels
    labels.json                                            label maps + split sizes
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_ROOT = Path(__file__).parent


def nuclei_root() -> Path:
    """Root of the nuclei subset (fluorescence microscopy, binary masks 0/255)."""
    return SAMPLE_ROOT / "nuclei"


def abdomen_ct_root() -> Path:
    """Root of the abdominal CT slice subset (class-index masks, see labels.json)."""
    return SAMPLE_ROOT / "abdomen_ct"


def abdomen_mr_root() -> Path:
    """Root of the abdominal MR slice subset (class-index masks, see labels.json)."""
    return SAMPLE_ROOT / "abdomen_mr"


def volumes_root() -> Path:
    """Folder holding `ct/` and `mr/`, each with `image.nii.gz` and `label.nii.gz`."""
    return SAMPLE_ROOT / "volumes"
