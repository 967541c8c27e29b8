"""The Streamlit explorer: AppTest runs the script in-process; the browser test drives
the real server in headless Chromium, as a user would meet it."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import chromium_path

APPS = Path(__file__).resolve().parent.parent / "apps"


def test_explorer_renders_on_tiny_model(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    at = AppTest.from_file(str(APPS / "explorer.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Attention and heads"
    assert "0:'The'" in at.markdown[0].value  # token strings shown
    at.number_input(key="layer").set_value(2).run()
    assert not at.exception
    assert any("Attention pattern L2H" in s.value for s in at.subheader)


def test_explorer_shows_bad_prompt_as_error(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    at = AppTest.from_file(str(APPS / "explorer.py"), default_timeout=120).run()
    at.text_area[0].set_value("   ").run()
    assert at.error and "empty prompt" in at.error[0].value


def test_lens_page_renders(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-gpt2")
    at = AppTest.from_file(str(APPS / "pages" / "1_Logit_lens.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("sum to" in c.value for c in at.caption)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.browser
def test_explorer_in_chromium_on_embedded_model(tmp_path):
    """`interp app` serves on 127.0.0.1 and the first page draws attention maps."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("chromium is not installed (the README's test command installs it)")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "interp", "app", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        # Only the loopback interface is served: every listener on the port is 127.0.0.1.
        listeners = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and line.split()[1].endswith(f":{port:04X}")]
        assert listeners == [f"0100007F:{port:04X}"], listeners
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1300, "height": 2000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("text=Top induction heads", timeout=180_000)
            page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=60_000)
            body = page.inner_text("body")
            assert "smollm2-135m: 30 layers, 9 query heads over 3 KV heads" in body
            assert "Attention pattern L18H6" in body and "L18H6 (0.9" in body
            assert page.locator(".js-plotly-plot").count() >= 2
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_patching_page_renders_and_reports_bad_pairs(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    at = AppTest.from_file(str(APPS / "pages" / "2_Patching.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("cells in" in c.value for c in at.caption)
    at.radio(key="method").set_value("attribution").run()
    assert not at.exception and any("cells in" in c.value for c in at.caption)
    at.text_input[1].set_value("The Vatican is located in the city of").run()
    assert at.error and "different lengths" in at.error[0].value


def test_trace_page_runs_on_click(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-gpt2")
    at = AppTest.from_file(str(APPS / "pages" / "3_Causal_trace.py"), default_timeout=120).run()
    at.number_input(key="samples").set_value(2)
    at.button(key="run").click().run()
    assert not at.exception, at.exception
    assert any("subject corrupted" in c.value for c in at.caption)


def test_edit_page_edits_and_undoes(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    at = AppTest.from_file(str(APPS / "pages" / "4_ROME_edit.py"), default_timeout=180).run()
    at.number_input(key="layer").set_value(1)
    at.number_input(key="cov").set_value(2048)
    at.button(key="run").click().run()
    assert not at.exception, at.exception
    assert any("Edited layer 1" in c.value for c in at.caption)
    assert at.warning and "carries edits" in at.warning[0].value
    at.button(key="undo").click().run()
    assert not at.exception and not [w for w in at.warning if "carries edits" in w.value]


def test_probe_page_runs(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    at = AppTest.from_file(str(APPS / "pages" / "5_Probes.py"), default_timeout=180).run()
    at.button(key="run").click().run()
    assert not at.exception, at.exception
    assert any("best layer" in c.value for c in at.caption)


def test_features_page_dashboard_search_and_live_steering(monkeypatch, tmp_path):
    import torch
    from streamlit.testing.v1 import AppTest

    from interp.models import load_model
    from saes import SAEConfig, make_sae, save_sae
    from saes.extract import ExtractConfig, extract_features

    torch.manual_seed(0)
    save_sae(make_sae(SAEConfig("topk", 64, 48, k=4, hook_name="blocks.1.hook_resid_post", model_name="tiny-llama")),
             tmp_path / "sae")
    extract_features(load_model("tiny-llama"), [tmp_path / "sae"], tmp_path / "store",
                     ExtractConfig(corpus="bbc-news", tokens=2000, ctx=32, contexts_per_shard=16))
    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    at = AppTest.from_file(str(APPS / "pages" / "6_Features.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.info and "interp sae extract" in at.info[0].value  # no store yet: how to make one
    at.text_input(key="store").set_value(str(tmp_path / "store")).run()
    assert not at.exception, at.exception
    assert any("48 features" in c.value for c in at.caption)
    at.number_input(key="feature").set_value(3).run()
    assert any("Feature 3 fires on" in c.value for c in at.caption)
    at.text_input(key="token").set_value(" the").run()
    assert not at.exception and len(at.dataframe) == 1
    at.button(key="run").click().run()
    assert not at.exception, at.exception
    assert any("clamped at" in m.value for m in at.markdown)
    at.text_input(key="store").set_value(str(tmp_path / "nowhere")).run()
    assert at.error and "not a feature store" in at.error[0].value
    import gc

    import streamlit as st

    st.cache_resource.clear()  # the cached store's DuckDB connection, closed before the interpreter exits
    gc.collect()
