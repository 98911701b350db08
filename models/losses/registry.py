"""The loss registry: every segmentation loss registers its class by name."""

from __future__ import annotations

from torch import nn

from core.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry(
    "loss", modules=["models.losses.pixelwise", "models.losses.overlap", "models.losses.hybrid"]
)


def register_loss(name: str):
    """Register a loss class under ``name`` (its module must be listed in :data:`LOSSES`).

    Args:
        name: Unique registry name (lower case, e.g. ``"dice"``).

    Returns:
        A decorator that registers the class and returns it unchanged.
    """
    return LOSSES.register(name)


def list_losses() -> list[str]:
    """Return the sorted names of all registered losses."""
    return LOSSES.names()


def create_loss(name: str, **kwargs) -> nn.Module:
    """Build a registered loss.

    Args:
        name: Registry name, see :func:`list_losses`.
        **kwargs: Keyword arguments of the loss class (e.g. ``ignore_index``, ``smooth``).

    Returns:
        The loss module; ``forward(logits, target)`` returns a scalar tensor.

    Raises:
        core.registry.UnknownNameError: If ``name`` is not registered.
    """
    return LOSSES.get(name)(**kwargs)
