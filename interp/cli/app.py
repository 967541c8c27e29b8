"""``interp app``: the Streamlit explorer on 127.0.0.1 (this process becomes the server)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from interp.cli._common import AddParser, count
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]


def add_parsers(add: AddParser) -> None:
    s = add("app", "launch the Streamlit explorer on 127.0.0.1")
    s.add_argument("--port", type=count, default=8501)


def cmd_app(args) -> dict:
    script = Path(__file__).resolve().parent.parent.parent / "apps" / "_serve.py"
    if not script.is_file():
        raise InterpError(f"the explorer is not next to this install ({script} missing); "
                          "run from a source checkout (pip install -e .)")
    from interp.models import DEFAULT_MODEL

    # The server script starts loading the model at once, while Streamlit starts and the browser
    # connects (about 9 s of imports and set-up on a 2-core CPU), then runs `streamlit run`.
    model = args.model or os.environ.get("INTERP_MODEL") or DEFAULT_MODEL
    cmd = [sys.executable, str(script), model, "--server.address", "127.0.0.1",
           "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    env = dict(os.environ, INTERP_MODEL=model)  # the model the pages start from is the one loading
    print(f"interp: explorer on http://127.0.0.1:{args.port}", file=sys.stderr)
    sys.stderr.flush()
    # Become the Streamlit server (no child left behind when this process is stopped).
    os.execve(sys.executable, cmd, env)



COMMANDS = {"app": cmd_app}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """Nothing: the explorer replaces this process and never returns a result."""
