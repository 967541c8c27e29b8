"""The process behind one background job (:mod:`_jobs`): runs its steps, each an ``interp``
command, in order, and records where it is in ``status.json``.

Run as ``python apps/_jobrun.py JOB_DIR``. A step that fails stops the job with the step's
last ``interp:`` line as its error; the next start runs the steps again, and each command
resumes its own work, so nothing done is lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(job: Path) -> int:
    spec = json.loads((job / "spec.json").read_text())
    started = time.time()
    state = {"state": "running", "step": 0, "pid": os.getpid(), "started": started}
    _write(job / "status.json", state)
    log = job / "log.txt"
    for i, step in enumerate(spec["steps"]):
        state["step"] = i
        _write(job / "status.json", state)
        with open(log, "ab") as out:
            out.write(f"== {step['label']}\n".encode())
            out.flush()
            code = subprocess.run([sys.executable, "-m", "interp", *step["argv"]], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=out).returncode
        if code != 0:
            lines = [l for l in log.read_text(errors="replace").splitlines() if l.startswith("interp:")]
            error = lines[-1] if lines else f"{step['label']} exited with status {code}"
            _write(job / "status.json", {**state, "state": "failed", "error": error, "finished": time.time()})
            return 1
    _write(job / "status.json", {**state, "state": "done", "step": len(spec["steps"]), "finished": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
