"""The framework's argument parser: short flags, 'did you mean' hints, Lightning's integer flags."""

from __future__ import annotations

import difflib
import importlib
import re
from contextvars import ContextVar
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser

from core.config_stack import CONFIG_SOURCES, expand_config_args, locate_key

ARG_ALIASES = {"--cfg": "--config", "--seed": "--seed_everything"}
# The dotted keys given as flags by the last translate_argv call: errors say "command line" for them.
_CLI_KEYS: ContextVar[frozenset[str]] = ContextVar("cli_keys", default=frozenset())

# Trainer flags that mean "N batches" as an int and "a fraction" as a float. Lightning annotates
# some as Union[float, int], which jsonargparse resolves to float: `1` would become 1.0 = 100%.
INT_OR_FRACTION_FLAGS = (
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
    "trainer.limit_predict_batches",
    "trainer.overfit_batches",
    "trainer.val_check_interval",
)


def translate_argv(argv: list[str]) -> list[str]:
    """Map the framework's short flags onto LightningCLI's (``--cfg`` -> ``--config``, ``--seed``).

    Config files are expanded with their ``base:`` files first (see :mod:`core.config_stack`).
    """
    out = []
    for arg in argv:
        head, sep, tail = arg.partition("=")
        out.append(ARG_ALIASES.get(head, head) + sep + tail)
    _CLI_KEYS.set(frozenset(a.partition("=")[0][2:] for a in out if a.startswith("--")))
    return expand_config_args(out)


def flat_keys(namespace: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a (nested) jsonargparse namespace."""
    keys = []
    for key, value in vars(namespace).items() if isinstance(namespace, Namespace) else []:
        full = f"{prefix}{key}"
        keys.append(full)
        keys.extend(flat_keys(value, f"{full}."))
    return keys


def closest_key(key: str, valid: list[str]) -> str | None:
    """The valid dotted key closest to a misspelt one (whole key first, then its last part)."""
    candidates = [v for v in valid if v.split(".")[-1] != key] + valid
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        leaf = {v.split(".")[-1]: v for v in valid}
        close = difflib.get_close_matches(key.split(".")[-1], list(leaf), n=1)
    return close[0] if close else None


def prefer_int_over_float(
    parser: LightningArgumentParser, keys: tuple[str, ...] = INT_OR_FRACTION_FLAGS
) -> None:
    """Make ``int | float`` trainer flags parse ``1`` as the int 1 (one batch), ``0.5`` as a fraction.

    Raises:
        RuntimeError: If a flag is missing (a Lightning version that renamed it: fix the list).
    """
    actions = {getattr(a, "dest", None): a for a in parser._actions}
    for key in keys:
        action = actions.get(key)
        if action is None or not hasattr(action, "_typehint"):
            raise RuntimeError(f"parser has no typed option {key!r}; update INT_OR_FRACTION_FLAGS")
        action._typehint = int | float | None


class FrameworkParser(LightningArgumentParser):
    """Argument parser whose errors name the key, the config file it came from and the closest valid key."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        """Report a parse error: one line (``ValueError``) at top level; nested parsers raise as usual.

        Raises:
            ValueError: At top level: ``unknown key 'data.init_args.batch_sise' (configs/x.yaml): did
                you mean 'batch_size'?`` or ``missing required key 'data.init_args.root' ...``.
        """
        if not self.exit_on_error:  # a nested parser: jsonargparse catches its errors
            super().error(message, ex)
        summary = self.summarise_error(message)
        if summary is None:
            super().error(message, ex)
        raise ValueError(summary) from ArgumentParsingError(message)

    def summarise_error(self, message: str) -> str | None:
        """One line for an unknown or a missing required key in ``message``; None for other errors."""
        section = _section_of(message)
        missing = re.findall(r"the following arguments are required: ([\w., ]+)", message)
        if missing:
            keys = [k.strip() for k in missing[0].split(",") if k.strip()]
            where = f" in section {section}" if section else ""
            return (
                f"missing required key(s) {', '.join(keys)}{where}: set it in a config file or on the "
                f"command line (e.g. --{section.split(':')[0] + '.' if section else ''}{keys[0]} VALUE)"
            )
        # A config file's error reaches this method twice: first raw, then as jsonargparse's
        # 'Parser key "config": <the first summary>', which is kept as it is.
        summarised = re.search(r"((?:unknown key|bad value) '.*)$", message, re.S)
        if summarised:
            return summarised.group(1).strip()
        bad = re.findall(r"(?:unrecognized arguments: |does not accept option |Option )'?-*([\w.]+)", message)
        located = {key: locate_key(key) for key in dict.fromkeys(bad)}
        entries = [(f[1], str(f[0])) if f else (k, "command line") for k, f in located.items()]
        if not entries:
            return _bad_value(message) if "Expected a <class" in message else None
        try:
            valid = flat_keys(self.get_defaults(skip_validation=True))
        except Exception:  # noqa: BLE001 - building suggestions must never hide the real error
            valid = []
        valid += _class_keys(message)
        parts = []
        for key, origin in entries:
            close = closest_key(key, valid)
            hint = f": did you mean {close!r}?" if close else ""
            parts.append(f"unknown key {key!r} ({origin}){hint}")
        return "; ".join(parts)


def _bad_value(message: str) -> str | None:
    """``bad value 'four' for key 'data.init_args.batch_size' (command line): expected int``."""
    keys = re.findall(r'Parser key "([\w.]+)"', message)
    if not keys:
        return None
    key = keys[0] if len(keys) == 1 else f"{keys[0]}.init_args.{keys[-1]}"
    got = re.search(r"Got value: (.+)", message) or re.search(r"val='([^']*)'", message)
    got = got or re.search(r"Given value: (.+)", message)
    types = dict.fromkeys(
        t.replace("NoneType", "None") for t in re.findall(r"Expected a <class '([\w.]+)'>", message)
    )
    found = None if _given_on_command_line(key) else locate_key(key)
    origin = str(found[0]) if found else "command line"
    value = got.group(1).strip() if got else "?"
    return f"bad value {value!r} for key {key!r} ({origin}): expected {' or '.join(types)}"


def _given_on_command_line(key: str) -> bool:
    """Whether ``key`` (``data.init_args.batch_size`` or ``data.batch_size``) was given as a flag."""
    return bool({key, key.replace(".init_args.", ".")} & _CLI_KEYS.get())


def _class_keys(message: str) -> list[str]:
    """The ``__init__`` arguments of the class a "Problem with given class_path" message names."""
    match = re.search(r"Problem with given class_path '([\w.]+)'", message)
    if match is None:
        return []
    try:
        from jsonargparse._parameter_resolvers import get_signature_parameters  # follows **kwargs

        module, _, name = match.group(1).rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return [p.name for p in get_signature_parameters(cls, "__init__")]
    except Exception:  # noqa: BLE001 - building suggestions must never hide the real error
        return []


class ArgumentParsingError(Exception):
    """jsonargparse's full message, kept as the cause of the one-line error (shown with --debug)."""


def _section_of(message: str) -> str | None:
    """``data: datasets.datamodule.SegmentationDataModule`` from a "Problem with given class_path" message."""
    match = re.search(r"Problem with given class_path '([\w.]+)'", message)
    if match is None:
        return None
    for _path, data in reversed(CONFIG_SOURCES.get()):
        for name, value in data.items():
            if isinstance(value, dict) and value.get("class_path") == match.group(1):
                return f"{name}: {match.group(1)}"
    return match.group(1)
