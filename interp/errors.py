"""The one exception type users see.

Library functions raise :class:`InterpError` for bad input (an unknown model, a
multi-token answer, a layer out of range, ...). Its message is a single line that
says what was wrong and what to do instead; the CLI prints it to stderr and exits
with status 2, never with a traceback.
"""

from __future__ import annotations

__all__ = ["InterpError", "check_index"]


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
