"""Dataset folder layouts: a registry of functions that list the (image, mask) pairs of a split.

Every layout function takes ``(root, split)`` with ``split`` in ``train``/``val``/``test`` and returns
the split's records, or ``[]`` when the layout has no such split (the DataModule then derives one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from core.registry import Registry
from datasets.image_io import IMAGE_SUFFIXES
from datasets.records import SPLIT_NAMES, SampleRecord

LayoutFn = Callable[[Path, str], list[SampleRecord]]

# Layouts defined here register on import; the modules below hold the others.
LAYOUTS: Registry[LayoutFn] = Registry(
    "layout", modules=["datasets.jsrt", "datasets.noise.layout", "datasets.volume_layouts"]
)

# ISIC 2017 ships a per-image superpixel PNG next to each image; it is not a sample.
_IGNORED_STEM_SUFFIXES = ("_superpixels",)


def register_layout(name: str, structure: str = "", volume: bool = False) -> Callable[[LayoutFn], LayoutFn]:
    """Register a layout function under ``name``.

    Args:
        name: Layout name used in configs (``data.layout``).
        structure: Human-readable expected folder structure, shown in error messages.
        volume: The layout lists volume cases (read as slices: :mod:`datasets.volume_layouts`).

    Returns:
        Decorator that stores the function in ``LAYOUTS`` and returns it unchanged.
    """
    return LAYOUTS.register(name, structure=structure, volume=volume)


def find_samples(layout: str, root: str | Path, split: str) -> list[SampleRecord]:
    """List the records of one split of a dataset stored in a registered layout.

    Args:
        layout: Registered layout name (see ``LAYOUTS``).
        root: Dataset root folder.
        split: One of ``train``, ``val``, ``test``.

    Returns:
        Records sorted by id; ``[]`` when the layout has no such split.

    Raises:
        ValueError: If the layout or split name is unknown, or two images share an id.
        FileNotFoundError: If the root is missing (message gives the expected structure), an image
            has no mask (message names the image and where the mask was looked for), or an image
            folder holds no images.
    """
    layout_fn = LAYOUTS.get(layout)
    structure = LAYOUTS.meta(layout)["structure"]
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split '{split}'; expected one of {SPLIT_NAMES}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root} (layout '{layout}' expects:\n{structure})")
    records = layout_fn(root, split)
    _check_unique_ids(records, root, split)
    return sorted(records, key=lambda r: r.id)


def _check_unique_ids(records: Sequence[SampleRecord], root: Path, split: str) -> None:
    seen: dict[str, Path] = {}
    for record in records:
        if record.id in seen:
            raise ValueError(
                f"two images under {root} (split '{split}') share the id '{record.id}': "
                f"{seen[record.id]} and {record.image}"
            )
        seen[record.id] = record.image


def _is_sample_image(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not path.stem.lower().endswith(_IGNORED_STEM_SUFFIXES)
    )


def list_images(directory: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    """List the image files directly inside ``directory`` (no recursion), sorted by name.

    Args:
        directory: Folder to list.
        suffixes: Accepted lower-case file suffixes.

    Returns:
        Paths of images, skipping hidden files and ``*_superpixels`` files.

    Raises:
        FileNotFoundError: If the folder is missing or holds no image.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"image folder not found: {directory}")
    wanted = tuple(suffixes)
    images = sorted(p for p in directory.iterdir() if _is_sample_image(p) and p.suffix.lower() in wanted)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(wanted)}) found in {directory}")
    return images


def pair_with_masks(
    images: Sequence[Path], mask_dir: Path, mask_stems: Callable[[str], Sequence[str]]
) -> list[SampleRecord]:
    """Attach to each image the mask in ``mask_dir`` whose stem is one of ``mask_stems(image_stem)``.

    Stems are compared case-insensitively and any image suffix is accepted for the mask.

    Args:
        images: Image paths; their stems become the record ids.
        mask_dir: Folder holding the masks.
        mask_stems: Candidate mask stems for an image stem, in order of preference.

    Returns:
        One record per image.

    Raises:
        FileNotFoundError: If ``mask_dir`` is missing or an image has no mask there.
    """
    if not mask_dir.is_dir():
        raise FileNotFoundError(
            f"mask folder not found: {mask_dir} (needed for the images in {images[0].parent})"
        )
    by_stem: dict[str, Path] = {}
    for path in sorted(mask_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem.lower(), path)
    records = []
    for image in images:
        candidates = list(mask_stems(image.stem))
        mask = next((by_stem[c.lower()] for c in candidates if c.lower() in by_stem), None)
        if mask is None:
            raise FileNotFoundError(
                f"no mask for image {image}: looked in {mask_dir} for "
                f"{', '.join(c + '.<png|jpg|tif|...>' for c in candidates)}"
            )
        records.append(SampleRecord(id=image.stem, image=image, mask=mask))
    return records


def first_existing(root: Path, names: Sequence[str]) -> Path | None:
    """Return ``root / name`` for the first name in ``names`` that is a folder, else None."""
    return next((root / n for n in names if (root / n).is_dir()), None)


def _missing_structure(root: Path, layout: str, split: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{root} does not hold the '{split}' split of layout '{layout}'; "
        f"expected:\n{LAYOUTS.meta(layout)['structure']}"
    )


def _split_dir(root: Path, names: Sequence[str], layout: str, split: str) -> Path | None:
    """First existing folder among ``names``; only a missing ``train`` is an error (others are derived)."""
    found = first_existing(root, names)
    if found is None and split == "train":
        raise _missing_structure(root, layout, split)
    return found


def _isic_dirs(data: str, truth: str, short: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Folder names of one ISIC split: the official names, then ``<short>_Data``/``<short>_GroundTruth``."""
    return (data, f"{short}_Data"), (truth, f"{short}_GroundTruth")


def _isic_split(
    root: Path, split: str, layout: str, dirs: dict[str, tuple[Sequence[str], Sequence[str]]], suffix: str
) -> list[SampleRecord]:
    """Shared ISIC reader: ``dirs[split] = (image folder names, ground-truth folder names)``."""
    if split not in dirs:
        return []
    data_names, gt_names = dirs[split]
    data_dir = _split_dir(root, data_names, layout, split)
    if data_dir is None:
        return []
    gt_dir = first_existing(root, gt_names) or root / gt_names[0]
    images = list_images(data_dir, (".jpg", ".jpeg", ".png"))
    return pair_with_masks(images, gt_dir, lambda stem: [stem + suffix])


def _stem_mask_names(stem: str) -> list[str]:
    return [stem, f"{stem}_mask", f"{stem}_segmentation"]


_FOLDER_SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


@register_layout(
    "folder",
    structure=(
        "  <root>/{train,val,test}/{images,masks}/  (val and test optional)\n"
        "  or flat <root>/{images,masks}/  (train only; val/test derived by k-fold)\n"
        "  mask = same stem as the image, or <stem>_mask / <stem>_segmentation, any image suffix"
    ),
)
def folder_layout(root: Path, split: str) -> list[SampleRecord]:
    """Generic layout: split folders with ``images``/``masks``, or one flat ``images``/``masks`` pair."""
    split_dir = first_existing(root, _FOLDER_SPLIT_DIRS[split])
    if split_dir is not None and (split_dir / "images").is_dir():
        return pair_with_masks(list_images(split_dir / "images"), split_dir / "masks", _stem_mask_names)
    has_split_dirs = any(first_existing(root, names) for names in _FOLDER_SPLIT_DIRS.values())
    if not has_split_dirs and (root / "images").is_dir():
        if split != "train":
            return []
        return pair_with_masks(list_images(root / "images"), root / "masks", _stem_mask_names)
    if has_split_dirs and split != "train":
        return []
    raise _missing_structure(root, "folder", split)


@register_layout(
    "polyp",
    structure="  <root>/{train,validation,test}/{images,masks}/  (mask = same stem as the image)",
)
def polyp_layout(root: Path, split: str) -> list[SampleRecord]:
    """Kvasir/CVC polyp layout of medical-segmentation-pytorch."""
    names = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}[split]
    split_dir = _split_dir(root, names, "polyp", split)
    if split_dir is None:
        return []
    return pair_with_masks(list_images(split_dir / "images"), split_dir / "masks", lambda s: [s])


@register_layout(
    "isic2016",
    structure=(
        "  <root>/ISBI2016_ISIC_Part1_Training_Data/*.jpg (or Training_Data/)\n"
        "  <root>/ISBI2016_ISIC_Part1_Training_GroundTruth/{id}_Segmentation.png (or Training_GroundTruth/)\n"
        "  <root>/ISBI2016_ISIC_Part1_Test_Data/ + ..._Test_GroundTruth/ (or Test_Data/, Test_GroundTruth/)"
    ),
)
def isic2016_layout(root: Path, split: str) -> list[SampleRecord]:
    """ISIC 2016 lesion segmentation (Part 1); no validation split."""
    dirs = {
        key: _isic_dirs(f"ISBI2016_ISIC_Part1_{name}_Data", f"ISBI2016_ISIC_Part1_{name}_GroundTruth", name)
        for key, name in (("train", "Training"), ("test", "Test"))
    }
    return _isic_split(root, split, "isic2016", dirs, "_Segmentation")


@register_layout(
    "isic2017",
    structure=(
        "  <root>/ISIC-2017_{Training,Validation,Test_v2}_Data/*.jpg\n"
        "  <root>/ISIC-2017_{Training,Validation,Test_v2}_Part1_GroundTruth/{id}_segmentation.png\n"
        "  (or short Training_Data/, Training_GroundTruth/, Validation_*, Test_*; *_superpixels.png ignored)"
    ),
)
def isic2017_layout(root: Path, split: str) -> list[SampleRecord]:
    """ISIC 2017 lesion segmentation (Part 1) with its official validation split."""
    names = {"train": "Training", "val": "Validation", "test": "Test_v2"}
    short = {"train": "Training", "val": "Validation", "test": "Test"}
    dirs = {
        key: _isic_dirs(
            f"ISIC-2017_{names[key]}_Data", f"ISIC-2017_{names[key]}_Part1_GroundTruth", short[key]
        )
        for key in names
    }
    return _isic_split(root, split, "isic2017", dirs, "_segmentation")


@register_layout(
    "isic2018",
    structure=(
        "  <root>/ISIC2018_Task1-2_Training_Input/*.jpg (or Training_Data/)\n"
        "  <root>/ISIC2018_Task1_Training_GroundTruth/{id}_segmentation.png (or Training_GroundTruth/)\n"
        "  (train only; val/test derived by k-fold)"
    ),
)
def isic2018_layout(root: Path, split: str) -> list[SampleRecord]:
    """ISIC 2018 Task 1 training data; validation and test come from k-fold."""
    dirs = {
        "train": _isic_dirs(
            "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth", "Training"
        )
    }
    return _isic_split(root, split, "isic2018", dirs, "_segmentation")


@register_layout(
    "ham10000",
    structure="  <root>/**/*.jpg, e.g. HAM10000_images_part_1/, HAM10000_images_part_2/ (unlabelled)",
)
def ham10000_layout(root: Path, split: str) -> list[SampleRecord]:
    """HAM10000 unlabelled dermoscopy images (pretraining); train only, no masks."""
    if split != "train":
        return []
    images = sorted(
        p for p in root.rglob("*") if _is_sample_image(p) and p.suffix.lower() in (".jpg", ".jpeg")
    )
    if not images:
        raise FileNotFoundError(f"no .jpg images found under {root} (searched recursively)")
    return [SampleRecord(id=p.stem, image=p, mask=None) for p in images]
