"""Groups of task settings as frozen dataclasses: one YAML mapping each (``optim:``, ``augment:``).

A task's ``__init__`` takes the group typed as its dataclass, so the config schema lists and checks
its fields; a checkpoint stores it as a plain dict (``as_dict``) so it loads with
``torch.load(weights_only=True)``, and ``coerce`` reads either form back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from core.registry import unknown_name_message

S = TypeVar("S", bound="Settings")


@dataclass(frozen=True)
class Settings:
    """Base of the settings dataclasses: ``coerce`` from a config value, ``as_dict`` for checkpoints.

    Subclasses are ``@dataclass(frozen=True)`` and name their config key in ``config_key``. The base
    is a (field-less) dataclass too, so the config schema shows a group as a plain mapping.
    """

    config_key: ClassVar[str] = "settings"

    @classmethod
    def coerce(cls: type[S], value: S | dict[str, Any] | None, default: S) -> S:
        """The settings from a config object, a (partial) dict over ``default``, or None.

        Args:
            value: An instance, a mapping of some of the fields (the rest from ``default``), or None.
            default: What None and the missing fields mean.

        Returns:
            An instance of ``cls``.

        Raises:
            ValueError: For a value that is not a mapping, or keys that are not fields (closest named).
        """
        if value is None:
            return default
        if isinstance(value, cls):
            return value
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        if not isinstance(value, dict):
            raise ValueError(f"{cls.config_key} must be a mapping of {names}, got {value!r}")
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{cls.config_key}: " + unknown_name_message("key", unknown[0], names))
        merged = {**asdict(default), **value}  # type: ignore[call-overload]
        # YAML and checkpoints hold lists where the fields hold tuples (ranges, sizes).
        merged = {k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()}
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, tuples as lists (what checkpoints and ``hparams.yaml`` store: no Python tags)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]


def check_exclusive(hint: str = "", **options: Any) -> None:
    """Raise when more than one of the options that mean the same choice is set (not None).

    Args:
        hint: Added to the message (how to choose), e.g. ``"set n_masked: null to mask by area"``.
        **options: The options' names and values.

    Raises:
        ValueError: ``model: n_masked=128 and mask_ratio=0.5 are both set; give one (<hint>)``.
    """
    given = [f"{name}={value!r}" for name, value in options.items() if value is not None]
    if len(given) > 1:
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"model: {' and '.join(given)} are both set; give one{extra}")
