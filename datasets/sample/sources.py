"""Fetching, verifying and decoding the upstream files the embedded sample is derived from.

Sources (see NOTICE): the TotalSegmentator 2.18.0 source distribution (Apache-2.0) and the stardist 0.9.2
wheel (BSD-3-Clause). Only the members listed in `MEMBER_SHA256` are read; their hashes are checked so
that a rebuild provably starts from the same bytes.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile

TOTALSEG_REQ = "totalsegmentator==2.18.0"
STARDIST_REQ = "stardist==0.9.2"
_TS = "totalsegmentator-2.18.0/"
_REF = _TS + "tests/reference_files/"
TS_CT, TS_CT_SEG = _REF + "example_ct_sm.nii.gz", _REF + "example_seg.nii.gz"
TS_MR, TS_MR_SEG = _REF + "example_mr_sm.nii.gz", _REF + "example_seg_mr.nii.gz"
TS_CLASS_MAP = _TS + "totalsegmentator/map_to_binary.py"
SD_IMAGE, SD_MASK = "stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif"

MEMBER_SHA256: dict[str, str] = {
    TS_CT: "e50c00b2914e2cac0aaee8e7f3b5f57d44d9f21bfd5c0577271c54c0cb49e9fb",
    TS_CT_SEG: "8be652475a4aaae83103a66bfb3345314b1fc06742807a06cf5005f7a7913a2d",
    TS_MR: "209b46efaff595dd54a9332872e17a722b62654bbb68dbd89acd5090701bbd4f",
    TS_MR_SEG: "e73a5ee12962aa2bb2f3e43ab58dfc67990c5a7ef2dcb426a1bf5e5982b9587f",
    SD_IMAGE: "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    SD_MASK: "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
}


def pip_download(dest: Path) -> tuple[Path, Path]:
    """Download the two source archives with pip (no dependencies) into `dest`.

    The stardist wheel is requested for one fixed platform so the same file is fetched everywhere; the
    data members are identical across its platform wheels.

    Returns:
        (TotalSegmentator sdist path, stardist wheel path).

    Raises:
        subprocess.CalledProcessError: if pip fails.
        FileNotFoundError: if pip did not leave exactly the expected archive.
    """
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(dest)]
    subprocess.run([*pip, "--no-binary", ":all:", TOTALSEG_REQ], check=True)
    platform = ["--only-binary", ":all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]
    subprocess.run([*pip, *platform, "--implementation", "cp", STARDIST_REQ], check=True)
    return _one(dest, "totalsegmentator-2.18.0.tar.gz"), _one(dest, "stardist-0.9.2-*.whl")


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one file matching {pattern} in {folder}, found {found}")
    return found[0]


def _verified(name: str, data: bytes) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    expected = MEMBER_SHA256.get(name)
    if expected is not None and digest != expected:
        raise ValueError(f"{name}: sha256 {digest} differs from the expected {expected}")
    return data


def read_sdist_member(sdist: Path, name: str) -> bytes:
    """Bytes of member `name` of a .tar.gz source distribution, hash-checked when listed.

    Raises:
        KeyError: if the archive has no such member.
        ValueError: if the member's sha256 is not the recorded one.
    """
    with tarfile.open(sdist, "r:gz") as tar:
        handle = tar.extractfile(tar.getmember(name))
        if handle is None:
            raise KeyError(f"{sdist}: member {name} is not a regular file")
        return _verified(name, handle.read())


def read_wheel_member(wheel: Path, name: str) -> bytes:
    """Bytes of member `name` of a wheel (zip), hash-checked when listed.

    Raises:
        KeyError: if the archive has no such member.
        ValueError: if the member's sha256 is not the recorded one.
    """
    with zipfile.ZipFile(wheel) as archive:
        return _verified(name, archive.read(name))


def decode_nifti(data: bytes) -> nib.Nifti1Image:
    """Decode gzipped NIfTI-1 bytes and reorient to the closest RAS+ canonical orientation."""
    return nib.as_closest_canonical(nib.Nifti1Image.from_bytes(gzip.decompress(data)))


def decode_tiff(data: bytes) -> np.ndarray:
    """Decode TIFF bytes into an array."""
    return tifffile.imread(io.BytesIO(data))


def totalseg_class_map(source: bytes, task: str) -> dict[int, str]:
    """Read TotalSegmentator's `class_map[task]` (id -> organ name) from map_to_binary.py, not importing it.

    Raises:
        KeyError: if the file has no `class_map` assignment or no such task.
    """
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "class_map" for t in node.targets):
            maps = ast.literal_eval(node.value)
            if task not in maps:
                raise KeyError(f"map_to_binary.py class_map has no task {task!r}; has {sorted(maps)}")
            return maps[task]
    raise KeyError("map_to_binary.py: no top-level `class_map = {...}` assignment found")


def check_organ_ids(class_map: dict[int, str], expected: dict[int, str]) -> None:
    """Fail loudly if upstream renumbered the organs the compact map relies on.

    Raises:
        ValueError: naming the first id whose organ differs.
    """
    for idx, name in expected.items():
        if class_map.get(idx) != name:
            raise ValueError(f"TotalSegmentator id {idx} is {class_map.get(idx)!r}; expected {name!r}")
