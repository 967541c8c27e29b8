"""The explorer as a user meets it: `interp app` on the embedded model, driven in headless Chromium.

One pass visits every page and performs one action on each, clicks a thumbnail to zoom a head, clicks
a DLA cell and an EAP graph node through to their head pages, opens a shared URL in a fresh browser context, asserts on
the rendered DOM and saves a screenshot per page. It also times what a user waits for (reported, never
asserted). To refresh the README's screenshots and latencies:

    INTERP_SCREENSHOTS=docs/figures .venv/bin/python -m pytest tests/test_app_browser.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks._harness import CHROMIUM_ARGS, busy_machine, chromium_path, explorer, free_port, idle, wait_listening
from benchmarks.explorer_load import visit_pages

pytestmark = [pytest.mark.slow, pytest.mark.browser]


_idle = idle  # wait until Streamlit has finished the run the last action started


def _shot(page, path: Path) -> None:
    """A full-page screenshot once every plotly chart on the page has drawn (plotly draws after the
    run that sent it has finished)."""
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                                    .every(c => c.querySelector('.main-svg'))""", timeout=60_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)


def _click_point(page, point) -> None:
    """A real mouse click on one plotly marker (plotly listens on the plot area, not the marker)."""
    point.scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def _no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.inner_text("body")[:2000]
    assert page.locator("[data-testid='stAlertContentError']").count() == 0, page.inner_text("body")[:2000]


@pytest.fixture(scope="module")
def embedded_sae(tmp_path_factory):
    """A small TopK SAE trained on the embedded model's L3 residual stream, and its feature store."""
    from interp import load_model
    from saes.features.extract import ExtractConfig, extract_features
    from saes.train import TrainConfig, train

    root = tmp_path_factory.mktemp("explorer-sae")
    model = load_model("smollm2-135m", device="cpu")
    train(model, TrainConfig(hook="blocks.3.hook_resid_post", d_sae=1152, k=16, tokens=24_576, batch_size=1024,
                             lr=1e-3, corpus="bbc-news"), root / "sae")
    extract_features(model, [root / "sae"], root / "store",
                     ExtractConfig(corpus="bbc-news", tokens=4096, ctx=64, model_batch=16))
    return str(root / "sae"), str(root / "store")


def test_every_page_in_chromium_on_the_embedded_model(tmp_path, embedded_sae):
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("chromium is not installed (the README's test command installs it)")
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("INTERP_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    latency: dict[str, float] = {}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "interp", "app", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server)
        latency["server_listening_s"] = time.perf_counter() - t_start
        # Only the loopback interface is served: every listener on the port is 127.0.0.1.
        listeners = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert listeners == [f"0100007F:{port:04X}"], listeners
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})

            # Model and prompt: tokens, next tokens and the loss per token.
            page.goto(base + "/")
            page.wait_for_selector("text=Mean loss", timeout=300_000)
            latency["first_page_interactive_s"] = time.perf_counter() - t_start
            _idle(page)
            body = page.inner_text("body")
            assert "smollm2-135m: 30 layers, 9 query heads over 3 KV heads" in body
            assert "0:'The'" in body and "Next token" in body and "' Paris'" in body
            _shot(page, shots / "explorer-model-and-prompt.png")
            # A second visitor finds the model loaded: only the page itself runs.
            t = time.perf_counter()
            second = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            second.goto(base + "/")
            second.wait_for_selector("text=Mean loss", timeout=120_000)
            latency["first_page_second_visitor_s"] = time.perf_counter() - t
            second.context.close()

            # Attention: change the head, then click a thumbnail to zoom it.
            page.goto(base + "/Attention")
            page.wait_for_selector("text=Top induction heads", timeout=300_000)
            _idle(page)
            assert "L18H6 (0.9" in page.inner_text("body")
            for what, button, views in (("head", ".st-key-w_head button >> nth=-1", ("L18H7", "L18H8", "L18H7")),
                                        ("layer", ".st-key-w_layer button >> nth=0", ("L17H7", "L16H7", "L15H7"))):
                if what == "head":  # the + button twice, then the - button
                    buttons = [button, button, ".st-key-w_head button >> nth=0"]
                else:
                    buttons = [button] * 3
                times = []
                for b, view in zip(buttons, views):
                    t = time.perf_counter()
                    page.locator(b).click()
                    page.wait_for_selector(f"h3:has-text('Attention pattern {view}')", timeout=60_000)
                    times.append(time.perf_counter() - t)
                    _idle(page)
                latency[f"attention_switch_{what}_s"] = sorted(times)[1]  # the median of three
            _click_point(page, page.locator(".st-key-grid .scatterlayer .point").nth(3 * 9 + 4))
            page.wait_for_selector("h3:has-text('Attention pattern L3H4')", timeout=60_000)
            _idle(page)
            assert "layer=3" in page.url and "head=4" in page.url  # the view is in the URL
            _shot(page, shots / "explorer-attention.png")

            # Lens: the logit lens and DLA; a click on a head's DLA cell opens its page.
            page.goto(base + "/Lens")
            page.wait_for_selector("text=The parts sum to", timeout=120_000)
            _idle(page)
            _no_errors(page)
            _shot(page, shots / "explorer-lens.png")
            _click_point(page, page.locator(".st-key-dla .scatterlayer .point").nth(20 * 9 + 1))
            page.wait_for_function("() => location.pathname.endsWith('/Head')", timeout=60_000)
            page.wait_for_selector("h1:has-text('L20H1')", timeout=120_000)
            _idle(page)

            # Circuits: patching, the EAP graph; a click on a head node opens its page.
            page.goto(base + "/Circuits")
            page.wait_for_selector(".st-key-graph .js-plotly-plot", timeout=300_000)
            _idle(page)
            _no_errors(page)
            assert "Faithfulness of the circuit" in page.inner_text("body")
            _shot(page, shots / "explorer-circuits.png")
            nodes = page.locator(".st-key-graph .scatterlayer .trace").last
            names = nodes.locator(".textpoint text").evaluate_all("els => els.map(e => e.textContent)")
            i, node = next((i, n) for i, n in enumerate(names) if re.fullmatch(r"L\d+H\d+", n))
            _click_point(page, nodes.locator(".point").nth(i))
            page.wait_for_function("() => location.pathname.endsWith('/Head')", timeout=60_000)
            page.wait_for_selector(f"h1:has-text('{node}')", timeout=120_000)
            # The page draws top-down: its heading and attention come before the whole run ends.
            page.wait_for_selector("text=OV copying score", timeout=120_000)
            _idle(page)
            _no_errors(page)
            assert "OV copying score" in page.inner_text("body")
            _shot(page, shots / "explorer-head.png")

            # Trace and edit: trace the fact, send it to the editor.
            page.goto(base + "/Trace_and_edit?samples=3")
            page.get_by_role("button", name="Trace", exact=True).click()
            page.wait_for_selector("text=subject corrupted", timeout=300_000)
            _idle(page)
            page.get_by_role("button", name="Send this fact to the editor", exact=True).click()
            _idle(page)
            assert page.locator(".st-key-w_template input").input_value() == "{} is located in the city of"
            _shot(page, shots / "explorer-trace-and-edit.png")

            # Probes and steering: steer towards positive sentiment.
            page.goto(base + "/Probes_and_steering?alpha=6.0&steer_layer=10")
            page.wait_for_selector("text=Steering playground", timeout=120_000)
            page.get_by_role("button", name="Generate", exact=True).click()
            page.wait_for_selector("text=P(positive) of the generations", timeout=300_000)
            _idle(page)
            _no_errors(page)
            _shot(page, shots / "explorer-probes-and-steering.png")

            # Features: a dashboard from the store, the next feature's, live features and steering.
            sae_dir, store = embedded_sae
            page.goto(f"{base}/Features?sae_dir={sae_dir}&store={store}&feature=0")
            page.wait_for_selector("text=Feature 0 fires on", timeout=120_000)
            _idle(page)
            t = time.perf_counter()
            page.locator(".st-key-w_feature button").last.click()
            page.wait_for_selector("text=Feature 1 fires on", timeout=60_000)
            latency["feature_dashboard_s"] = time.perf_counter() - t
            _idle(page)
            page.get_by_role("button", name="Run", exact=True).click()
            page.wait_for_selector("text=clamped at", timeout=120_000)
            _idle(page)
            _no_errors(page)
            _shot(page, shots / "explorer-features.png")

            # Token search and weights: a short GCG run with its live curve.
            page.goto(base + "/Token_search_and_weights?gcg_steps=4")
            page.get_by_role("button", name="Search", exact=True).click()
            page.wait_for_selector("text=/(Best found|Target reached) in/", timeout=300_000)
            _idle(page)
            _no_errors(page)
            _shot(page, shots / "explorer-token-search-and-weights.png")

            # A shared link reopens the same view in a fresh browser (no session to carry it).
            other = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            other.goto(base + "/Attention?layer=5&head=2&prompt=A+shared+view+of+a+prompt")
            other.wait_for_selector("h3:has-text('Attention pattern L5H2')", timeout=120_000)
            assert other.locator(".st-key-w_prompt input").input_value() == "A shared view of a prompt"
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    (shots / "explorer-latency.json").write_text(json.dumps({k: round(v, 2) for k, v in latency.items()}, indent=1))
    print("explorer latency:", json.dumps({k: round(v, 2) for k, v in latency.items()}))


@contextmanager
def _demo_started(tmp_path, path: str, button_name: str, what: str):
    """A fresh explorer on a tiny model with an empty cache; ``path`` opened, its demo offered with an
    estimate, and started. Yields (browser, page, base URL, screenshot folder)."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("chromium is not installed (the README's test command installs it)")
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("INTERP_SCREENSHOTS") or tmp_path)
    env = {**os.environ, "INTERP_CACHE": str(tmp_path / "cache"), "INTERP_DEMO_TOKENS": "0.02"}
    with explorer("tiny-llama", env) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(base + path)
        button = page.get_by_role("button", name=button_name)
        button.wait_for(timeout=180_000)
        assert "min on this machine" in page.inner_text("body")
        button.click()
        page.wait_for_selector(f"text=/{what}: step/", timeout=120_000)
        yield browser, page, base, shots


def test_first_run_demo_job_and_every_page_under_load_on_a_tiny_model(tmp_path):
    """A new user's first run, on a tiny model and an empty cache: the Features page offers the demo, a
    click starts the background job, another page stays usable while it runs, and the page fills in
    with a dashboard when it is done. Then, with a competing CPU-bound process running, every page is
    visited: each shows a figure or its words (never a blank page), and the times are recorded."""
    with _demo_started(tmp_path, "/Features", "Train a demo SAE and extract a demo store",
                       "The demo SAE and store") as (browser, page, base, shots):
        other = browser.new_page(viewport={"width": 1400, "height": 1400})  # the app stays usable meanwhile
        other.goto(base + "/")
        other.wait_for_selector("text=Mean loss", timeout=180_000)
        other.close()
        page.wait_for_selector("text=Top activations", timeout=600_000)
        _idle(page)
        _no_errors(page)
        assert "demo-sae-tiny-llama" in page.locator(".st-key-w_store input").input_value()
        _shot(page, shots / "explorer-features-demo.png")

        with busy_machine():
            under_load = visit_pages(page, base)
        browser.close()
    print("first figure under load (s):", json.dumps({k: round(v, 2) for k, v in under_load.items()}))
    (shots / "explorer-under-load.json").write_text(json.dumps({k: round(v, 2) for k, v in under_load.items()},
                                                              indent=1))


def _graph_nodes(page) -> list[tuple[int, int, str, str]]:
    """(trace index, point index, node id, readable id) of every node marker the graph draws, read from
    the plotly figure in the page."""
    return page.evaluate("""() => { const gd = document.querySelector('.st-key-graph .js-plotly-plot');
        const out = []; gd.data.forEach((t, i) => { if (t.customdata) t.customdata.forEach((c, j) =>
          out.push([i, j, c, ((t.hovertext || [])[j] || '').split('<b>')[1].split('</b>')[0]])); });
        return out; }""")


def _click_node(page, trace: int, point: int, readable: str) -> None:
    """Click one node marker with the mouse, at the pixel where plotly draws it, and wait for the page to
    show that node (the click landed)."""
    page.locator(".st-key-graph .js-plotly-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    x, y = page.evaluate("""([i, j]) => { const gd = document.querySelector('.st-key-graph .js-plotly-plot');
        const t = gd._fullData.find(f => f.index === i), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.l2p(t.x[j]), r.top + ya._offset + ya.l2p(t.y[j])]; }""", [trace, point])
    page.mouse.click(x, y)
    try:
        page.wait_for_function("s => [...document.querySelectorAll('h3')].some(h => h.innerText.startsWith(s))",
                               arg=readable + ":", timeout=60_000)
    except Exception:
        shown = page.evaluate("() => [...document.querySelectorAll('h3')].map(h => h.innerText)")
        raise AssertionError(f"the click on {readable!r} did not land: the page shows {shown}") from None
    _idle(page)
    _no_errors(page)


def _clicks_land(page, most: int = 6) -> int:
    """Click a spread of nodes (features first, then an error, a token and a logit) and check each lands."""
    nodes = _graph_nodes(page)
    kinds = {}
    for trace, point, node_id, readable in nodes:
        kinds.setdefault(readable.split(" ")[0] if not readable.startswith("L") else "feature", []).append(
            (trace, point, readable))
    picks = kinds.get("feature", [])[:3] + [v[0] for k, v in kinds.items() if k != "feature"]
    for _, _, readable in picks[:most]:  # a click redraws the chart (the node's links on top): find it again
        trace, point = next((t, p) for t, p, _, r in _graph_nodes(page) if r == readable)
        _click_node(page, trace, point, readable)
    return len(picks[:most])


def test_attribution_graph_page_in_chromium_on_a_tiny_model(tmp_path):
    """The Attribution graph page as a new user meets it: no transcoders, so the demo job trains a set in
    the background and the graph draws. Mouse clicks on nodes land (at the default thresholds and at 0.4);
    a feature opens its dashboard; Pin, clicked with the mouse, pins it and the pinned subgraph shows it
    with the logits; the ablate button changes the logits shown. Meanwhile a second tab generating with
    a steering vector and a graph computing in the first tab both finish (they share one model)."""
    with _demo_started(tmp_path, "/Attribution_graph", "Train demo transcoders",
                       "The demo transcoders") as (browser, page, base, shots):
        page.wait_for_selector(".st-key-graph .js-plotly-plot", timeout=600_000)
        _idle(page)
        _no_errors(page)
        assert "Replacement score" in page.inner_text("body") and "The demo set:" in page.inner_text("body")
        assert re.search(r"drawing [0-9,]+ of [0-9,]+ links", page.inner_text("body"))
        assert _clicks_land(page) >= 3
        page.goto(base + "/Attribution_graph?node_t=0.4")
        page.wait_for_selector(".st-key-graph .js-plotly-plot", timeout=120_000)
        _idle(page)
        assert _clicks_land(page) >= 3

        # two tabs computing on the shared model at once
        other = browser.new_page(viewport={"width": 1400, "height": 1400})
        other.goto(base + "/Probes_and_steering?alpha=6.0&steer_layer=1")
        other.get_by_role("button", name="Generate", exact=True).wait_for(timeout=120_000)
        _idle(other)
        other.get_by_role("button", name="Generate", exact=True).click()
        page.goto(base + "/Attribution_graph?node_t=0.95&prompt=The+Colosseum+is+in+the+city+of")
        other.wait_for_selector("text=P(positive) of the generations", timeout=300_000)
        page.wait_for_selector(".st-key-graph .js-plotly-plot", timeout=300_000)
        for tab in (page, other):
            _idle(tab)
            _no_errors(tab)
        assert "Colosseum" in page.inner_text("body")
        other.close()

        features = [n for n in _graph_nodes(page) if n[3].startswith("L")]
        assert features, "no feature node at node threshold 0.95"
        trace, point, node_id, readable = features[0]
        _click_node(page, trace, point, readable)
        page.wait_for_selector("text=Feature dashboard", timeout=120_000)
        assert "Strongest inputs" in page.inner_text("body")
        page.get_by_role("button", name="Pin this node").click()  # it crashed with the box drawn already
        page.get_by_role("button", name="Unpin this node").wait_for(timeout=60_000)
        _idle(page)
        _no_errors(page)
        page.get_by_text("Show only the pinned subgraph").click()
        _idle(page)
        page.wait_for_function("id => document.querySelector('.st-key-graph .js-plotly-plot').data.some("
                               "t => t.name === 'logit') && document.querySelector('.st-key-graph .js-plotly-plot')"
                               ".data.some(t => (t.customdata || []).includes(id))", arg=node_id, timeout=60_000)
        pinned = [n for n in _graph_nodes(page)]
        assert {n[2] for n in pinned} >= {node_id} and len(pinned) < 20
        _shot(page, shots / "explorer-graph-pinned.png")
        page.get_by_text("Show only the pinned subgraph").click()
        _idle(page)
        _shot(page, shots / "explorer-graph.png")
        page.get_by_role("button", name="Ablate / steer this feature").click()
        page.wait_for_selector("text=Largest logit change", timeout=120_000)
        _idle(page)
        _no_errors(page)
        line = page.locator("text=Largest logit change").inner_text()
        real = float(re.search(r"real model ([0-9.]+)", line).group(1))
        assert real > 0, line
        _shot(page, shots / "explorer-graph-ablate.png")

        # the hover-a-token strip wraps: every token of a long prompt lies inside its frame
        words = "When Mary and John went to the store on a sunny day in the city, John gave a drink to"
        page.goto(base + "/Attention?prompt=" + words.replace(" ", "+"))
        page.wait_for_selector("text=Top induction heads", timeout=120_000)
        _idle(page)
        frame = next(f for f in page.frames if f.query_selector("#toks"))
        inside = frame.evaluate("""() => { const w = document.documentElement.clientWidth, h = window.innerHeight;
            return [...document.querySelectorAll('.t')].map(t => { const r = t.getBoundingClientRect();
              return r.right <= w + 1 && r.bottom <= h + 1; }); }""")
        assert len(inside) >= 20 and all(inside), inside
        browser.close()


def test_attribution_graph_page_draws_a_cross_layer_transcoders_graph_in_chromium(tmp_path, tiny_models):
    """A CLT folder (Gemma Scope 2's layout) given as the page's transcoder set: the graph draws with its
    scores, clicks on nodes land, and ablating a feature changes the real model's logits."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("chromium is not installed (the README's test command installs it)")
    from playwright.sync_api import sync_playwright

    from saes.clt import save_gemma_scope_clt
    from tests.test_clt import random_clt

    folder = save_gemma_scope_clt(random_clt(tiny_models["tiny-llama"], seed=5), tmp_path / "clt")
    env = {**os.environ, "INTERP_CACHE": str(tmp_path / "cache"), "INTERP_TRANSCODERS": str(folder)}
    with explorer("tiny-llama", env) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(base + "/Attribution_graph?node_t=0.95")
        page.wait_for_selector(".st-key-graph .js-plotly-plot", timeout=300_000)
        _idle(page)
        _no_errors(page)
        assert "Replacement score" in page.inner_text("body")
        assert _clicks_land(page) >= 2
        features = [n for n in _graph_nodes(page) if n[3].startswith("L")]
        assert features, "no feature node at node threshold 0.95"
        _click_node(page, *features[0][:2], features[0][3])
        page.get_by_role("button", name="Ablate / steer this feature").click()
        page.wait_for_selector("text=Largest logit change", timeout=120_000)
        _idle(page)
        _no_errors(page)
        line = page.locator("text=Largest logit change").inner_text()
        assert float(re.search(r"real model ([0-9.]+)", line).group(1)) > 0, line
        browser.close()
