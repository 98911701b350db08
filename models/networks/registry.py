"""The network registry: every architecture registers a builder by name; ``create_model`` builds one."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from core.registry import Registry

NETWORKS: Registry[Callable[..., nn.Module]] = Registry(
    "network",
    modules=[
        "models.networks.unet",
        "models.networks.unetpp",
        "models.networks.resunet",
        "models.networks.resunetpp",
        "models.networks.ducknet",
        "models.networks.encoder_unet",
    ],
)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a network builder under ``name``.

    The builder must accept ``in_channels`` and ``num_classes`` keyword arguments plus any
    architecture-specific keywords. A new architecture's module must also be listed in
    :data:`NETWORKS`'s modules.

    Args:
        name: Unique registry name (lower case, e.g. ``"unet"``).

    Returns:
        A decorator that registers and returns the builder unchanged.
    """
    return NETWORKS.register(name)


def list_models() -> list[str]:
    """Return the sorted names of all registered networks."""
    return NETWORKS.names()


def create_model(name: str, in_channels: int = 3, num_classes: int = 2, **kwargs) -> nn.Module:
    """Build a registered network.

    Args:
        name: Registry name, see :func:`list_models`.
        in_channels: Number of input image channels (1 for grey, 3 for RGB).
        num_classes: Number of output channels (logits), background included.
        **kwargs: Architecture-specific options forwarded to the builder.

    Returns:
        The network; ``forward(x)`` maps ``[B, in_channels, H, W]`` to logits
        ``[B, num_classes, H, W]``.

    Raises:
        core.registry.UnknownNameError: If ``name`` is not registered (closest match and valid names).
        ValueError: For channel or class counts below 1.
    """
    builder = NETWORKS.get(name)
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
    return builder(in_channels=in_channels, num_classes=num_classes, **kwargs)
