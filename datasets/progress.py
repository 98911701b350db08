"""One progress bar for the data tools (volume preparation, noise simulation): tqdm on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], what: str, unit: str = "item") -> Iterator[T]:
    """Iterate ``items`` with a progress bar (count, rate) on stderr, hidden when stderr is no terminal.

    Args:
        items: What to iterate (its length is shown when it has one).
        what: The bar's label (``read``, ``write``, ``noise``).
        unit: The unit of one item.
    """
    yield from tqdm(items, desc=what, unit=unit, file=sys.stderr, disable=None, leave=False)
