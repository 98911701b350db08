"""One registry class for every kind of named, pluggable thing (networks, losses, layouts, ...).

Each kind owns one :class:`Registry` instance, defined next to what it registers, that names the
modules holding its entries. Those modules are imported on the first lookup, so a registry is
complete whatever the caller imported before: registration never depends on import side effects
elsewhere.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered (a ``KeyError`` and a ``ValueError``, for either kind of caller)."""

    def __str__(self) -> str:
        """The plain message (``KeyError`` would quote it)."""
        return str(self.args[0]) if self.args else ""


def unknown_name_message(kind: str, name: str, valid: Sequence[str]) -> str:
    """The framework's one message for an unknown name: the closest match, then every valid name.

    Args:
        kind: What was looked up (``network``, ``loss``, ``layout``, ...).
        name: The name asked for.
        valid: The registered names.

    Returns:
        ``unknown <kind> 'x': did you mean 'y'? Valid: a, b, c``.
    """
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    hint = f": did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} Valid: {', '.join(sorted(valid))}"


class Registry(Generic[T]):
    """Names -> objects of one kind, with optional metadata per entry.

    Args:
        kind: What the entries are, for messages (``network``, ``loss``, ...).
        modules: Modules that register entries; imported on the first lookup.

    Example:
        >>> LOSSES = Registry("loss", modules=["models.losses.pixelwise"])
        >>> @LOSSES.register("ce")
        ... class CrossEntropy: ...
    """

    def __init__(self, kind: str, modules: Sequence[str] = ()) -> None:
        self.kind = kind
        self._modules = tuple(modules)
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._loaded = not self._modules

    def register(self, name: str, obj: T | None = None, **meta: Any) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does.

        Args:
            name: Unique name (lower case by convention).
            obj: The object; omitted when used as ``@registry.register("name")``.
            **meta: Metadata kept beside the entry (see :meth:`meta`).

        Returns:
            ``obj`` itself, or the decorator.

        Raises:
            ValueError: If ``name`` is already registered to another object.
        """

        def add(value: T) -> T:
            if name in self._entries and self._entries[name] is not value:
                raise ValueError(f"{self.kind} {name!r} is already registered ({self._entries[name]!r})")
            self._entries[name] = value
            self._meta[name] = dict(meta)
            return value

        if obj is not None:
            return add(obj)
        return add

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def get(self, name: str) -> T:
        """The entry named ``name``.

        Raises:
            UnknownNameError: For an unregistered name (closest match and all valid names listed).
        """
        self._load()
        if name not in self._entries:
            raise UnknownNameError(unknown_name_message(self.kind, name, list(self._entries)))
        return self._entries[name]

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata given at registration (a copy)."""
        self.get(name)
        return dict(self._meta[name])

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise :class:`UnknownNameError`."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        """Sorted registered names."""
        self._load()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs sorted by name."""
        return [(n, self._entries[n]) for n in self.names()]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the entry named ``name`` (a class or factory) with the arguments."""
        factory: Callable[..., Any] = self.get(name)  # type: ignore[assignment]
        return factory(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered."""
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """Registered names, sorted."""
        return iter(self.names())

    def __len__(self) -> int:
        """Number of entries."""
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        """``Registry('loss', 12 entries)``."""
        return f"Registry({self.kind!r}, {len(self)} entries)"
