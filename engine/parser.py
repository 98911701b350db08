"""The framework's argument parser: short flags, 'did you mean' hints, Lightning's integer flags."""

from __future__ import annotations

import difflib
import re
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser

from core.config_stack import expand_config_args

ARG_ALIASES = {"--cfg": "--config", "--seed": "--seed_everything"}

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
    """Argument parser that adds the closest valid key to 'unknown key' errors."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        """Report a parse error, suggesting the closest valid key for a typo."""
        bad = re.findall(r"(?:unrecognized arguments: |does not accept option |Option )'?-*([\w.]+)", message)
        if bad:
            try:
                valid = flat_keys(self.get_defaults(skip_validation=True))
            except Exception:  # noqa: BLE001 - building suggestions must never hide the real error
                valid = []
            hints = [
                f"unknown key {key!r}: did you mean {close!r}?"
                for key in bad
                if (close := closest_key(key, valid))
            ]
            if hints:
                message = f"{message}\n" + "\n".join(hints)
        super().error(message, ex)
