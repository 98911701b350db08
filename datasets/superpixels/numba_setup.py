"""Numba threading layer that is safe in forked DataLoader workers, and the choice of batch kernel.

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


def batch_kernel(serial, parallel, n_items: int):
    """The batch kernel to call: ``parallel`` (a prange loop) only for several items and threads.

    Launching a parallel region costs ~40 us on the reference machine even with one thread, 2% of a
    256x256 SLIC; a single image, or one thread (loader workers), takes the serial loop.

    Args:
        serial: the kernel with a plain loop over the batch.
        parallel: the same loop as ``numba.prange``.
        n_items: batch size.

    Returns:
        The kernel to call.
    """
    import numba

    return parallel if n_items > 1 and numba.get_num_threads() > 1 else serial


configure_threading_layer()
