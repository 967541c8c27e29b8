"""The host's memory as jobs read it before they start (what is free) and after they end (their peak)."""

from __future__ import annotations

import resource

__all__ = ["available_bytes", "peak_rss_bytes", "rss_bytes"]


def available_bytes() -> int | None:
    """Bytes of RAM free for new work now (MemAvailable: free plus reclaimable cache), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no psutil, or a platform it cannot read
        return None


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (``ru_maxrss``, kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
