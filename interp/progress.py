"""Progress on stderr: a live bar on a terminal, a plain line every few seconds anywhere else.

tqdm draws nothing when stderr is not a terminal (``disable=None``), so ``> log 2>&1`` used to
show nothing for a two-minute trace; forcing it on writes carriage-return redraws that a log
file keeps as one unreadable line. :func:`progress` gives a bar on a terminal and, elsewhere, a
complete line (``tracing: 120/900 cell [00:20<02:10, 6.0 cell/s]``) at most every
``PLAIN_EVERY`` seconds, plus the final count. Every long job in the workbench uses it.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import sys
import time
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm

__all__ = ["ESTIMATE_OVER", "PLAIN_EVERY", "Estimate", "duration", "listening", "progress"]

PLAIN_EVERY = float(os.environ.get("INTERP_PROGRESS_EVERY", 5.0))
"""Seconds between plain progress lines when stderr is not a terminal (``INTERP_PROGRESS_EVERY``;
the explorer's background jobs ask for 2 s, to redraw their bar often)."""
ESTIMATE_OVER = 60.0
"""Work expected to take longer than this many seconds says so once its first unit is timed."""


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


_listener: contextvars.ContextVar[Callable[[dict], None] | None] = contextvars.ContextVar("progress_listener",
                                                                                      default=None)


@contextlib.contextmanager
def listening(listener: Callable[[dict], None]) -> Iterator[None]:
    """Within the block, every progress bar and estimate of this thread also calls ``listener`` with a
    dict: ``{"desc", "n", "total", "elapsed", "remaining"}`` (seconds; ``total`` and ``remaining`` may
    be None) at each redraw, or ``{"estimate": text}`` once per estimate. A GUI draws its own bar from
    it (the explorer's pages); stderr gets its lines as before."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class _Discard(io.TextIOBase):
    """Where a listened-to bar writes: the listener shows it, so the server's stderr stays quiet."""

    def write(self, s: str) -> int:
        return len(s)


class _Told(tqdm):
    """A tqdm bar that also tells the thread's listener at each redraw."""

    def __init__(self, *args, listener, **kw):
        self._tell = listener
        super().__init__(*args, **kw)

    def display(self, *args, **kw):
        d = self.format_dict
        rate, total = d.get("rate"), d.get("total")
        remaining = (total - d["n"]) / rate if rate and total else None
        self._tell({"desc": self.desc, "n": d["n"], "total": total, "elapsed": d["elapsed"], "remaining": remaining})
        return super().display(*args, **kw)


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0,
             leave: bool = True, disable: bool = False) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total`` steps) on stderr; ``disable`` silences it (a DDP rank
    other than 0, a job too small to report). ``INTERP_PROGRESS=0`` silences every bar."""
    disable = disable or os.environ.get("INTERP_PROGRESS") == "0"
    listener = _listener.get()
    if listener is not None and not disable:
        return _Told(iterable, total=total, desc=desc, unit=unit, initial=initial, file=_Discard(),
                     mininterval=0.5, ascii=True, ncols=100, dynamic_ncols=False, listener=listener,
                     bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=sys.stderr,
                    disable=disable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=_Lines(sys.stderr), disable=disable,
                mininterval=PLAIN_EVERY, ascii=True, ncols=100, dynamic_ncols=False,
                bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")


class Estimate:
    """One ``interp: estimate:`` line for long work, printed when its first unit of work is timed:
    ``LRE sweep: about 4.9 min for 11 layers (the first took 27 s)``. Silent for work expected
    to take less than :data:`ESTIMATE_OVER` seconds, and after its one line. The progress bar
    keeps the running ETA; this line comes before the user has to watch it.

    ``warmup``: the first unit pays one-time costs (allocations, the first kernels), so the estimate
    waits for the next one and extrapolates from it. ``after``: seconds of work that follow the units
    (a graph's pruning and writing), asked for when the estimate is made and named by ``after_what``."""

    def __init__(self, what: str, total: int, unit: str, hint: str = "", warmup: bool = False,
                 after: Callable[[], float] | None = None, after_what: str = ""):
        self.what, self.total, self.unit, self.hint = what, total, unit, hint
        self.warmup, self.after, self.after_what = warmup, after, after_what
        self.t0, self.said = time.perf_counter(), False
        self.last, self.units_done, self.share_done = self.t0, 0, 0.0
        self.seconds: float | None = None
        """The estimate of the whole work, units and what follows them, once made."""
        self.after_seconds = 0.0

    def done(self, units: int = 1, share: float | None = None) -> None:
        """``units`` of the work are done (the first call makes the estimate, or the second with
        ``warmup``). Where units differ in cost, ``share`` gives the fraction of the whole work they
        were (a trace's first token row runs the whole prompt, its last one token)."""
        if self.said or units <= 0 or (share is not None and share <= 0):
            return
        now = time.perf_counter()
        share = units / self.total if share is None else share
        if self.warmup and self.units_done == 0 and self.share_done + share < 1 - 1e-9:
            self.last, self.units_done, self.share_done = now, units, share
            return
        self.said = True
        took = now - self.last
        remaining = max(0.0, 1.0 - self.share_done - share)
        units_seconds = (now - self.t0) + took / share * remaining
        self.after_seconds = float(self.after()) if self.after is not None else 0.0
        self.seconds = units_seconds + self.after_seconds
        if self.seconds >= ESTIMATE_OVER and os.environ.get("INTERP_PROGRESS") != "0":
            if self.units_done:
                first = "the first" if self.units_done == 1 else f"the first {self.units_done:,}"
                nxt = "the next" if units == 1 else f"the next {units:,}"
                took_text = f"{first} took {duration(self.last - self.t0)}, {nxt} {duration(took)}"
            else:
                took_text = f"the first {units} took" if units > 1 else "the first took"
                took_text += f" {duration(took)}"
            text = f"{self.what}: about {duration(self.seconds)}"
            if self.after is not None:
                text += (f" in all: {duration(units_seconds)} for {self.total:,} {self.unit} ({took_text}), then "
                         f"{duration(self.after_seconds)} to {self.after_what}")
            else:
                text += f" for {self.total:,} {self.unit} ({took_text})"
            text += f"; {self.hint}" if self.hint else ""
            print(f"interp: estimate: {text}", file=sys.stderr, flush=True)
            if _listener.get() is not None:
                _listener.get()({"estimate": text})


def duration(seconds: float) -> str:
    """``45 s``, ``4.9 min`` or ``2.1 h``: how estimates and the explorer's progress bars say a time."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
