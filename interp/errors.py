"""The one exception type users see.

Library functions raise :class:`InterpError` for bad input (an unknown model, a
multi-token answer, a layer out of range, ...). Its message is a single line that
says what was wrong and what to do instead; the CLI prints it to stderr and exits
with status 2, never with a traceback.
"""

from __future__ import annotations

import difflib
import sys

__all__ = ["InterpError", "check_hook", "check_index", "did_you_mean", "warn"]


class InterpError(ValueError):
    """Bad input or an unusable file, explained in one line."""

    def __init__(self, message: str):
        # One line by contract: callers print str(err) as-is.
        super().__init__(" ".join(str(message).split("\n")))


def check_index(value: int, size: int, what: str) -> int:
    """Return ``value`` if ``0 <= value < size`` (negative counts from the end), else raise."""
    if not -size <= value < size:
        raise InterpError(f"{what} {value} is out of range: the model has {size} (valid 0..{size - 1})")
    return value % size


def did_you_mean(name: str, choices, n: int = 3) -> str:
    """``"; did you mean a, b?"`` naming the choices closest to ``name``, or ``""`` when none is close."""
    near = difflib.get_close_matches(name, list(choices), n=n)
    return f"; did you mean {', '.join(near)}?" if near else ""


def check_hook(model, name: str) -> str:
    """Return ``name`` if the model has that hook, else raise with the nearest hook names."""
    if name not in model.hook_dict:
        raise InterpError(f"the model has no hook {name!r}" + (did_you_mean(name, model.hook_dict)
                                                               or " (e.g. blocks.0.hook_resid_post)"))
    return name


def warn(message: str) -> None:
    """One ``interp: warning:`` line on stderr: the result stands, but the user should know this."""
    print(f"interp: warning: {message}", file=sys.stderr, flush=True)
