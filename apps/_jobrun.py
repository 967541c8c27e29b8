"""The process behind one background job (:mod:`_jobs`): runs its steps, each an ``interp``
command, in order, and records where it is in ``status.json``.

Run as ``python apps/_jobrun.py JOB_DIR``. A step that fails stops the job with how it ended (its exit
status, or the signal that killed it) and its last error line; a job cancelled from the page (SIGTERM to
its process group) stops as ``cancelled``. The next start runs the steps again, and each command resumes
its own work, so nothing done is lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ERROR_LINE = re.compile(r"^interp( [\w-]+)*: ((internal )?error: |interrupted)")
"""How ``interp`` says it failed (``interp.cli.main``: ``interp: error:``, ``interp: internal error:``,
``interp: interrupted``; argparse: ``interp sae train: error:``); its estimate, note and warning lines
report and never match."""


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def how_it_ended(code: int) -> str:
    """``exit status 1``, or ``killed by SIGKILL (signal 9)`` for a negative return code."""
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "an unknown signal"
    return f"killed by {name} (signal {-code})"


def last_error(step_log: str) -> str:
    """The step's last error line: its last :data:`ERROR_LINE`, else a Python exception's last line,
    else ""."""
    lines = [line.strip() for line in step_log.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    if errors:
        return errors[-1]
    raised = [line for line in lines if line.split(":")[0].endswith(("Error", "Exception", "Interrupt"))]
    return raised[-1] if raised else ""


def main(job: Path) -> int:
    spec = json.loads((job / "spec.json").read_text())
    started = time.time()
    state = {"state": "running", "step": 0, "pid": os.getpid(), "started": started}
    _write(job / "status.json", state)
    cancelled = []
    signal.signal(signal.SIGTERM, lambda *_: cancelled.append(True))  # the child gets it too: its group's
    log = job / "log.txt"
    for i, step in enumerate(spec["steps"]):
        state["step"] = i
        _write(job / "status.json", state)
        with open(log, "ab") as out:
            out.write(f"== {step['label']}\n".encode())
            out.flush()
            begin = out.tell()
            code = subprocess.run([sys.executable, "-m", "interp", *step["argv"]], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=out).returncode
        if cancelled:
            _write(job / "status.json", {**state, "state": "cancelled", "error": "cancelled from the page; resume "
                                         "to go on from where it stopped", "finished": time.time()})
            return 1
        if code != 0:
            with open(log, "rb") as f:
                f.seek(begin)
                said = last_error(f.read().decode("utf-8", errors="replace"))
            error = f"step {i + 1} ({step['label']}) ended with {how_it_ended(code)}" + (f": {said}" if said else "")
            _write(job / "status.json", {**state, "state": "failed", "error": error, "exit": code,
                                         "finished": time.time()})
            return 1
    _write(job / "status.json", {**state, "state": "done", "step": len(spec["steps"]), "finished": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
