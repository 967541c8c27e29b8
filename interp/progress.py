"""Progress on stderr: a live bar on a terminal, a plain line every few seconds anywhere else.

tqdm draws nothing when stderr is not a terminal (``disable=None``), so ``> log 2>&1`` used to
show nothing for a two-minute trace; forcing it on writes carriage-return redraws that a log
file keeps as one unreadable line. :func:`progress` gives a bar on a terminal and, elsewhere, a
complete line (``tracing: 120/900 cell [00:20<02:10, 6.0 cell/s]``) at most every
``PLAIN_EVERY`` seconds, plus the final count. Every long job in the workbench uses it.
"""

from __future__ import annotations

import io
import os
import re
import sys

from tqdm.auto import tqdm

__all__ = ["PLAIN_EVERY", "progress"]

PLAIN_EVERY = 5.0
"""Seconds between plain progress lines when stderr is not a terminal."""


class _Lines(io.TextIOBase):
    """A file for tqdm that turns each redraw into one newline-terminated line."""

    def __init__(self, out):
        self.out = out

    _CURSOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # nested bars move the cursor up (ESC[A) between redraws

    def write(self, s: str) -> int:
        text = self._CURSOR.sub("", s).replace("\r", "").strip()
        if text:
            self.out.write(text + "\n")
        return len(s)

    def flush(self) -> None:
        self.out.flush()


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
             leave: bool = True, disable: bool = False) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total`` steps) on stderr; ``disable`` silences it (a DDP rank
    other than 0, a job too small to report). ``INTERP_PROGRESS=0`` silences every bar."""
    disable = disable or os.environ.get("INTERP_PROGRESS") == "0"
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=sys.stderr,
                    disable=disable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=_Lines(sys.stderr), disable=disable,
                mininterval=PLAIN_EVERY, ascii=True, ncols=100, dynamic_ncols=False,
                bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")
