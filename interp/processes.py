"""Whether a process is still running: the one question behind a store's lock and the explorer's
background jobs, each of which records the process id of the job that holds it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["alive"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine: it exists (or exists under another user) and
    is not a zombie, a finished child its parent has not reaped yet."""
    if pid <= 0:
        return False  # 0 and negative ids name process groups, not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True
