"""Checking a superpixel cache: against its manifest and against the images it should cover."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class VerifyReport:
    """Result of checking a cache folder against its manifest and the images on disk.

    Attributes:
        ok: Ids listed in the manifest whose file is valid.
        corrupt: Ids whose file exists but is invalid (truncated, bad CRC, other parameters' key).
        missing: Ids listed in the manifest without a file.
        unlisted: Valid map files not listed in the manifest (a run killed before recording them;
            the next generation run records them).
        absent: Images on disk without a valid map (only when the images were given).
    """

    ok: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when nothing is corrupt, missing or absent: every image has a valid map."""
        return not self.corrupt and not self.missing and not self.absent

    def summary(self) -> str:
        """One line with the counts."""
        return (
            f"ok {len(self.ok)}, corrupt {len(self.corrupt)}, missing {len(self.missing)}, "
            f"unlisted {len(self.unlisted)}, images without a map {len(self.absent)}"
        )


def print_verify(cache: Any, images: dict[str, Path]) -> int:
    """``--verify``: check the cache against its manifest and the images on disk; 0 when all is valid."""
    report = cache.verify(images)
    print(f"verify {cache.folder} against {len(images)} images: {report.summary()}")
    for image_id in report.corrupt:
        print(f"CORRUPT {cache.path_for(image_id)}")
    for image_id in report.missing:
        print(f"MISSING {image_id} (listed in the manifest)")
    for image_id in report.absent:
        print(f"NO MAP {images[image_id]}")
    if report.unlisted:
        print(
            f"{len(report.unlisted)} valid maps are not in the manifest yet: "
            "the next generation run records them"
        )
    return 0 if report.healthy else 1
