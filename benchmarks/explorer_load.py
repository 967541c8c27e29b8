"""Every explorer page on a busy machine: seconds from opening the page until its first figure has
drawn, with a competing CPU-bound process running the whole time (as when a training job shares
the 2-core machine), against the same first visit on the quiet machine (each side on a fresh
server, so every page computes what it shows).

Each page is opened in headless Chromium; where a page computes nothing until asked (Trace, Probe)
its first button is pressed. The page must show what it is doing from the start (a spinner's words,
the status widget or its inputs); the test that shares this code (``tests/test_app_browser.py``)
asserts that, and this benchmark records the times.

    python -m benchmarks.explorer_load [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import contextlib
import time

from benchmarks._harness import CHROMIUM_ARGS, busy_machine, chromium_path, emit, explorer, idle, machine

PAGES = [("/", None), ("/Attention", None), ("/Lens", None), ("/Circuits", None), ("/Head", None),
         ("/Trace_and_edit?samples=2", "Trace"), ("/Probes_and_steering", "Probe"), ("/Token_search_and_weights", None)]
"""Each page, and the button a user presses first where the page computes nothing until asked."""


def visit_pages(page, base: str, pages=PAGES, timeout_ms: int = 600_000) -> dict[str, float]:
    """Open each page; seconds until its first figure has drawn. Raises if a page shows nothing at
    all for a minute (no spinner, no status, no input) or no figure within ``timeout_ms``."""
    times = {}
    for path, button in pages:
        t = time.perf_counter()
        page.goto(base + path)
        try:
            page.wait_for_selector("[data-testid='stSpinner'], [data-testid='stPlotlyChart'], "
                                   "[data-testid='stStatusWidget'], [data-testid='stButton']",
                                   state="attached", timeout=60_000)
        except Exception as err:
            raise AssertionError(f"{path} showed nothing for 60 s: {page.inner_text('body')[:300]!r}") from err
        if button:
            idle(page, timeout_ms)
            page.get_by_role("button", name=button, exact=True).click()
        page.wait_for_selector("[data-testid='stPlotlyChart'] .main-svg", state="attached", timeout=timeout_ms)
        times[path] = time.perf_counter() - t
        idle(page, timeout_ms)
        errors = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count()
        if errors:
            raise AssertionError(f"{path}: {page.inner_text('body')[:1000]}")
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args(argv)
    chromium = chromium_path()
    if chromium is None:
        raise SystemExit("chromium is not installed (the README's test command installs it)")
    from playwright.sync_api import sync_playwright

    out = {"benchmark": "explorer_load", "model": args.model, "machine": machine()}
    for side in ("quiet", "under_load"):  # a fresh server each time: every page's first, uncached visit
        load = busy_machine() if side == "under_load" else contextlib.nullcontext()
        with explorer(args.model) as base, load, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            out[f"{side}_first_figure_s"] = {k: round(v, 2) for k, v in visit_pages(page, base).items()}
            browser.close()
    out["load_over_quiet"] = {k: round(out["under_load_first_figure_s"][k] / v, 2)
                              for k, v in out["quiet_first_figure_s"].items()}
    emit(out)


if __name__ == "__main__":
    main()
