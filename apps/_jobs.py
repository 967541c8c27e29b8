"""Background jobs the explorer's pages share: long work (a demo SAE and its store, demo
transcoders) runs as a detached process of ordinary ``interp`` commands, so the app stays usable
while it runs, a page reload or a second visitor finds it, and a job stopped halfway resumes,
because the commands themselves resume (``sae train`` from its checkpoint, ``sae extract`` from
its committed shards).

A job is a folder under the workbench cache (``jobs/<name>/``): ``spec.json`` (its steps, each a
label and an ``interp`` argument list), ``status.json`` (written atomically by the runner:
``state`` running/done/failed/cancelled, the step, its process id, times, and for a failure how the
step ended and its last error line) and ``log.txt`` (every step's stderr: the progress lines,
``interp: estimate:`` lines and any error line). Pages read :func:`status` and draw
:func:`progress_of` its last progress line; :func:`start` starts (or resumes) a job unless its process
is already running, and :func:`cancel` stops it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from interp.processes import alive

HERE = Path(__file__).resolve().parent

__all__ = ["Job", "Progress", "cancel", "job_dir", "progress_of", "start", "status"]


def job_dir(name: str) -> Path:
    from interp.cache import cache_dir, slug

    return cache_dir("jobs") / slug(name)


@dataclass
class Job:
    """What a page needs to show a job: its state, where it is, and its last words."""

    name: str
    state: str
    """``new`` (never started), ``running``, ``done``, ``cancelled``, or ``failed`` (an error, a signal, or
    its process gone)."""
    step: int
    steps: list[str]
    error: str = ""
    log_tail: str = ""
    started: float = 0.0
    finished: float = 0.0
    estimate: float = 0.0
    """Seconds the page estimated for the whole job when it was started (0: none given)."""


@dataclass
class Progress:
    """The last progress line of a step: ``desc: n/total unit [elapsed<remaining, rate]``."""

    desc: str
    n: int
    total: int | None
    remaining: str

    @property
    def fraction(self) -> float:
        return min(1.0, self.n / self.total) if self.total else 0.0


_LINE = re.compile(r"^(?P<desc>[^:\n]+): (?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?|\?) [^\[]*\[(?P<el>[^<]*)<"
                   r"(?P<rem>[^,\]]*)", re.M)


def _number(text: str) -> float:
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:], 1)
    return float(text.rstrip("kMG")) * scale


def progress_of(log_tail: str) -> Progress | None:
    """The last plain progress line (interp.progress) in a log's tail, parsed."""
    found = list(_LINE.finditer(log_tail))
    if not found:
        return None
    m = found[-1]
    total = None if m["total"] == "?" else int(_number(m["total"]))
    return Progress(m["desc"].strip(), int(_number(m["n"])), total, m["rem"].strip())


def _tail(path: Path, size: int = 4096) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def status(name: str) -> Job:
    d = job_dir(name)
    try:
        spec = json.loads((d / "spec.json").read_text())
        st = json.loads((d / "status.json").read_text())
    except (OSError, ValueError):
        return Job(name, "new", 0, [])
    tail = _tail(d / "log.txt")
    state = st.get("state", "failed")
    error = st.get("error", "")
    if state == "running" and not alive(int(st.get("pid", 0))):
        state, error = "failed", error or ("the job's process was killed before it could say how it ended (its "
                                           "runner itself was stopped); resume to go on")
    return Job(name, state, int(st.get("step", 0)), [s["label"] for s in spec["steps"]], error, tail,
               float(st.get("started", 0)), float(st.get("finished", 0)), float(spec.get("estimate", 0)))


def start(name: str, steps: list[tuple[str, list[str]]], env: dict | None = None, estimate: float = 0.0) -> Job:
    """Start job ``name`` (its steps: labels and ``interp`` argument lists) in a detached process, in a
    process group of its own (so that :func:`cancel` stops all of it), unless it is running already; a
    finished job is not run again. ``estimate`` is the page's guess of its seconds, kept to show beside
    the real time."""
    current = status(name)
    if current.state in ("running", "done"):
        return current
    from interp.cache import write_json

    d = job_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "spec.json", {"name": name, "steps": [{"label": label, "argv": argv} for label, argv in steps],
                                 "estimate": float(estimate)})
    with open(d / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(HERE / "_jobrun.py"), str(d)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True,
                                env={**os.environ, **(env or {}), "INTERP_PROGRESS_EVERY": "2"})
    write_json(d / "status.json", {"state": "running", "step": 0, "pid": proc.pid, "started": time.time()})
    return status(name)


def cancel(name: str, wait: float = 10.0) -> Job:
    """Stop a running job: SIGTERM to its process group (the runner and its ``interp`` command), which
    records it as ``cancelled``; what the command has saved (checkpoints, shards) stays for a resume."""
    job = status(name)
    if job.state != "running":
        return job
    d = job_dir(name)
    pid = int(json.loads((d / "status.json").read_text()).get("pid", 0))
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.time() + wait
    while time.time() < deadline and alive(pid):
        time.sleep(0.1)
    job = status(name)
    if job.state != "cancelled":  # the runner did not get to write it
        from interp.cache import write_json

        st = json.loads((d / "status.json").read_text())
        write_json(d / "status.json", {**st, "state": "cancelled", "finished": time.time(),
                                       "error": "cancelled from the page; resume to go on from where it stopped"})
        job = status(name)
    return job
