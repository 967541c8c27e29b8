"""Time to the explorer's first page: ``interp app`` against a plain ``streamlit run`` of the same
page, in headless Chromium.

``interp app`` starts loading the model (imports of torch, transformers and TransformerLens, then
the model itself) in a background thread while the server starts and before any browser
connects; ``streamlit run`` loads it when the first page runs, as a Streamlit app does. The
browser opens the page ``--delays`` seconds after the server listens: 0 is a script that connects
at once (the browser test), a few seconds is a person clicking the printed link.

For each delay and side, interleaved and ``--repeats`` times: seconds from starting the server
until it listens, and until the first page shows its results, from the start and from the visit.

    python -m benchmarks.explorer_start [--model smollm2-135m --delays 0,8 --repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._harness import CHROMIUM_ARGS, chromium_path, emit, free_port, machine, ratio, wait_listening

ROOT = Path(__file__).resolve().parent.parent


def _command(side: str, port: int, model: str) -> list[str]:
    if side == "interp_app":
        return [sys.executable, "-m", "interp", "app", "--model", model, "--port", str(port)]
    return [sys.executable, "-m", "streamlit", "run", str(ROOT / "apps" / "Model_and_prompt.py"),
            "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false"]


def first_page(browser, side: str, model: str, delay: float) -> dict:
    """One start of the server: seconds until it listens and until the first page has results."""
    port = free_port()
    env = dict(os.environ, INTERP_MODEL=model)
    t0 = time.perf_counter()
    server = subprocess.Popen(_command(side, port, model), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        try:
            wait_listening(port, server)
        except RuntimeError as err:
            raise SystemExit(f"explorer_start: {side}: {err}") from err
        listen = time.perf_counter() - t0
        time.sleep(delay)
        t_visit = time.perf_counter()
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("text=Mean loss", timeout=300_000)
        done = time.perf_counter()
        context.close()
    finally:
        server.terminate()
        server.wait()
    return {"listen_s": listen, "first_page_from_start_s": done - t0, "first_page_from_visit_s": done - t_visit}


def _stats(values: list[float]) -> dict:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values), "runs": len(values)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--delays", default="0,8", help="seconds between the server listening and the browser's visit")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-warmup", action="store_true", help="skip the untimed first start")
    ap.add_argument("--chromium", default=chromium_path())
    args = ap.parse_args(argv)
    if not args.chromium:
        raise SystemExit("explorer_start: no chromium found (scripts/setup.sh --browser installs it)")
    from playwright.sync_api import sync_playwright

    delays = [float(d) for d in args.delays.split(",")]
    sides = ("streamlit_run", "interp_app")
    runs = {(d, s): [] for d in delays for s in sides}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        if not args.no_warmup:
            first_page(browser, "streamlit_run", args.model, 0)  # warm the file cache for both sides
        for _ in range(args.repeats):
            for d in delays:
                for s in sides:
                    runs[(d, s)].append(first_page(browser, s, args.model, d))
                    print(f"explorer_start: delay {d:g} s, {s}: {runs[(d, s)][-1]['first_page_from_visit_s']:.1f} s "
                          "from the visit", file=sys.stderr)
        browser.close()

    result = {"benchmark": "explorer_start", "model": args.model, "machine": machine(), "by_delay": {}}
    for d in delays:
        row = {s: {k: _stats([r[k] for r in runs[(d, s)]]) for k in runs[(d, s)][0]} for s in sides}
        visit = {s: row[s]["first_page_from_visit_s"] for s in sides}
        row["streamlit_run_over_interp_app_from_visit"] = ratio(visit, "streamlit_run", "interp_app")
        result["by_delay"][f"{d:g}s"] = row
    emit(result)


if __name__ == "__main__":
    main()
