"""One error style for the command-line entry points: a user error is one line, not a traceback.

A user error (bad config, bad data, bad path, a refused checkpoint, an output that would be
overwritten) is raised inside the framework as ``ValueError``, ``FileNotFoundError`` or
``FileExistsError`` with a message naming the file, key or value and what was expected. The entry
points print it as ``<prog>: error: <message>`` on stderr and exit with code 2. The traceback is
shown on request: ``--debug`` on the command line or ``SPSEG_DEBUG=1`` in the environment, for the
rare case where the message is not enough.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError)
DEBUG_FLAG = "--debug"
DEBUG_ENV = "SPSEG_DEBUG"
EXIT_USER_ERROR = 2


def debug_requested(argv: Sequence[str]) -> bool:
    """Whether the traceback was asked for (``--debug`` in ``argv`` or ``SPSEG_DEBUG`` set, not ``0``)."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def run_entry_point(prog: str, main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and turn a user error into one line on stderr and exit code 2.

    Args:
        prog: Program name printed before ``error:`` (``run.py``, ``sp_generation.py``, ...).
        main: The entry point; takes the arguments without ``--debug``; an int it returns is the exit
            code, anything else (a path, a summary) means success.
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: ``main``'s, 0 when it returned no int, or 2 after a user error.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(args)
    try:
        code = main([a for a in args if a != DEBUG_FLAG])
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc()
        else:
            hint = f" (add {DEBUG_FLAG} or set {DEBUG_ENV}=1 for the traceback)"
            print(f"{prog}: error: {err}{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    return code if isinstance(code, int) and not isinstance(code, bool) else 0
