"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import time
from typing import Callable

import torch


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(terse=True), "device": "cpu"}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    return info


def chromium_path() -> str | None:
    """Debian's chromium (``scripts/setup.sh --browser`` installs it), or ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Headless Chromium on a machine without a network: no GPU, no sandbox (root), and none of the
# background connections it would otherwise try at every start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, server, timeout: float = 120) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``; raise ``RuntimeError``
    when the ``server`` process exits first or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited (code {server.returncode}) before listening on port {port}")
            if time.time() > deadline:
                raise RuntimeError(f"nothing listened on port {port} within {timeout:g} s")
            time.sleep(0.05)


@contextlib.contextmanager
def explorer(model: str, env: dict | None = None):
    """``interp app --model MODEL`` on a free port, listening; yields its base URL and stops it after."""
    import subprocess

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "interp", "app", "--model", model, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_listening(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def busy_machine(seconds: float = 1800):
    """A competing CPU-bound process for as long as the block runs (a machine shared with other work)."""
    import subprocess

    load = subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {seconds}\n"
                                                   "while time.time() < end: pass"])
    try:
        yield
    finally:
        load.kill()


def idle(page, timeout: int = 300_000) -> None:
    """Wait until Streamlit has finished the script run the last browser action started."""
    page.wait_for_timeout(250)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict:
    """Median seconds of each function, run in alternation so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": len(v)}
            for k, v in times.items()}


def ratio(times: dict, slow: str, fast: str) -> dict:
    """How many times faster ``fast`` ran than ``slow`` in an :func:`interleaved` result: the ratio of
    medians, and its spread (slowest ``fast`` run against fastest ``slow`` run, and the reverse)."""
    s, f = times[slow], times[fast]
    return {"median": s["median_s"] / f["median_s"], "spread": [s["min_s"] / f["max_s"], s["max_s"] / f["min_s"]]}


def emit(result: dict) -> None:
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
