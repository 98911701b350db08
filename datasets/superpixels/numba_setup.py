"""Numba threading layer that is safe in forked DataLoader workers.

Numba's default OpenMP layer hangs in a worker process forked after torch has used OpenMP in the
parent (the first validation loader of a training run). The ``workqueue`` layer has no such state.
A user's own ``NUMBA_THREADING_LAYER`` is respected.
"""

from __future__ import annotations

import os

FORK_SAFE_LAYER = "workqueue"


def configure_threading_layer() -> str:
    """Select the fork-safe threading layer unless the user chose one; return the layer in use."""
    import numba

    chosen = os.environ.get("NUMBA_THREADING_LAYER")
    if not chosen:
        numba.config.THREADING_LAYER = FORK_SAFE_LAYER
    return str(numba.config.THREADING_LAYER)


configure_threading_layer()
