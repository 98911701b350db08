"""Config files that stack: ``base:`` names the files a config builds on (later files win).

jsonargparse merges several ``--config`` files deeply, but a file that includes another through its
own ``config:`` key has its groups replaced wholesale. So the framework resolves ``base:`` itself and
hands LightningCLI a flat list of configs in order: bases first, then the file itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml

BASE_KEY = "base"

# The files the last expand_config_args call read, in order, with their content: error messages name
# the file a bad key came from (LightningCLI only sees their inline YAML).
CONFIG_SOURCES: ContextVar[tuple[tuple[Path, dict[str, Any]], ...]] = ContextVar("config_sources", default=())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        FileNotFoundError: Missing file.
        ValueError: The file is not a mapping at top level.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping at top level, got {type(data).__name__}")
    return data


def expand_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """List ``(file, content without base:)`` for a config and, first, all its bases (depth first).

    Args:
        path: A YAML config; its ``base:`` is a path or list of paths relative to the file.

    Returns:
        Files in the order they apply.

    Raises:
        ValueError: On a cycle of bases.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"config base cycle: {' -> '.join(str(p) for p in (*_seen, path))}")
    data = read_yaml(path)
    bases = data.pop(BASE_KEY, None) or []
    bases = [bases] if isinstance(bases, str) else list(bases)
    out: list[tuple[Path, dict[str, Any]]] = []
    for base in bases:
        out.extend(expand_config(path.parent / base, (*_seen, path)))
    out.append((path, data))
    return out


def _merge(into: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def load_config_stack(paths: list[str | Path]) -> dict[str, Any]:
    """Deep-merge configs (with their bases) into one dict, later files winning.

    Used by tools that read configs without LightningCLI (``sp_generation.py``, policy search).
    """
    merged: dict[str, Any] = {}
    for path in paths:
        for _, data in expand_config(path):
            _merge(merged, data)
    return merged


def expand_config_args(argv: list[str]) -> list[str]:
    """Replace each ``--config FILE`` by its bases and itself, as inline YAML for LightningCLI."""
    out: list[str] = []
    sources: list[tuple[Path, dict[str, Any]]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = None
        if arg == "--config" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--config="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            out.append(arg)
            i += 1
            continue
        if not Path(value).is_file():
            out += ["--config", value]  # let LightningCLI report it
            continue
        for path, data in expand_config(value):
            sources.append((path, data))
            out += ["--config", yaml.safe_dump(data, sort_keys=False)]
    CONFIG_SOURCES.set(tuple(sources))
    return out


def locate_key(
    key: str, sources: tuple[tuple[Path, dict[str, Any]], ...] | None = None
) -> tuple[Path, str] | None:
    """The last config file that sets ``key`` (a leaf name or a dotted tail) and its full dotted path.

    Args:
        key: ``batch_sise`` or ``data.init_args.batch_sise``.
        sources: ``(file, content)`` pairs (default: those of the last :func:`expand_config_args`).

    Returns:
        ``(file, "data.init_args.batch_sise")``, or None when no file sets it (a command-line flag).
    """
    tail = key.split(".")
    for path, data in reversed(sources if sources is not None else CONFIG_SOURCES.get()):
        found = _find_path(data, tail, [])
        if found is not None:
            return path, ".".join(found)
    return None


def _find_path(node: Any, tail: list[str], prefix: list[str]) -> list[str] | None:
    if not isinstance(node, dict):
        return None
    for name, value in node.items():
        path = [*prefix, str(name)]
        if path[-len(tail) :] == tail:
            return path
        found = _find_path(value, tail, path)
        if found is not None:
            return found
    return None
