"""Model registry: networks register themselves by name; ``create_model`` builds them."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a network builder under ``name``.

    The builder must accept ``in_channels`` and ``num_classes`` keyword arguments
    plus any architecture-specific keywords.

    Args:
        name: Unique registry name (lower case, e.g. ``"unet"``).

    Returns:
        A decorator that registers and returns the builder unchanged.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} is already registered by {MODELS[name]!r}")
        MODELS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Return the sorted names of all registered networks."""
    _import_networks()
    return sorted(MODELS)


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
        KeyError: If ``name`` is not registered (the message lists close matches).
    """
    _import_networks()
    if name not in MODELS:
        close = difflib.get_close_matches(name, MODELS, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} Registered: {sorted(MODELS)}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, **kwargs)


def _import_networks() -> None:
    """Import the network modules so that their ``@register_model`` decorators run."""
    import models.networks  # noqa: F401
