"""Base of the thin registered loss modules that forward their options to a plain function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn


def init_arguments(namespace: dict[str, Any]) -> dict[str, Any]:
    """Return the arguments of a subclass ``__init__`` given its ``locals()``.

    Call it before defining any local variable, so that only the parameters are present; ``self``
    and the ``__class__`` cell that zero-argument ``super()`` adds are dropped.
    """
    return {name: value for name, value in namespace.items() if name not in ("self", "__class__")}


class FunctionalLoss(nn.Module):
    """Store keyword options and call ``loss_fn(logits, target, **options)`` in ``forward``.

    Subclasses keep their own typed ``__init__`` (jsonargparse validates configs against it),
    convert their arguments and pass them on by the loss function's keyword names (all of them
    unchanged: ``super().__init__(**init_arguments(locals()))``). Tensor
    options (class weights) become non-persistent buffers so they follow ``.to(device)``
    without entering checkpoints.
    """

    loss_fn: ClassVar[Callable[..., torch.Tensor]]

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self._option_names = tuple(options)
        for name, value in options.items():
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value, persistent=False)
            else:
                setattr(self, name, value)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss."""
        options = {name: getattr(self, name) for name in self._option_names}
        return type(self).loss_fn(logits, target, **options)
