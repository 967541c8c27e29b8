"""The Streamlit explorer. AppTest runs each page in-process on a tiny model and performs one real
action; the browser test (tests/test_app_browser.py) drives the real server in headless Chromium on
the embedded model. Every bad input of the explorer's contract is checked here: one st.error line,
and the page still works afterwards."""

from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parent.parent / "apps"


def page(name: str, timeout: int = 180, **query):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APPS / name), default_timeout=timeout)
    for k, v in query.items():
        at.query_params[k] = str(v)
    return at


@pytest.fixture(autouse=True)
def _tiny(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_MODEL", "tiny-llama")
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_model_and_prompt_page(tiny_models):
    from interp.predictions import predict

    at = page("Model_and_prompt.py").run()
    _ok(at)
    assert at.title[0].value == "Model and prompt"
    at.text_area(key="w_prompt").set_value("The cat sat on the mat").run()
    _ok(at)
    assert "0:'The'" in at.markdown[0].value and "5:' mat'" in at.markdown[0].value
    expected = predict(tiny_models["tiny-llama"], "The cat sat on the mat", 10)
    assert any(f"Mean loss {expected.mean_loss:.3f} nats over 5" in c.value for c in at.caption)
    assert at.table[0].value["token"].tolist() == [repr(t) for t in expected.top_tokens]
    assert at.query_params["prompt"] == "The cat sat on the mat"  # the view is in the URL


def test_the_model_interp_app_loads_while_starting_is_the_one_the_pages_use(monkeypatch):
    import gc

    monkeypatch.syspath_prepend(str(APPS))
    import _preload
    import _shared

    monkeypatch.setenv("INTERP_MODEL", "tiny-gpt2")
    monkeypatch.setattr(_preload, "_started", False)  # this process is a server only for this test
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))  # the test process keeps its collector
    frozen: list[bool] = []
    _shared.cached_model.clear()

    def loaded_again(name, *a, **kw):
        raise AssertionError(f"the page loaded {name} itself")

    with monkeypatch.context() as m:
        m.setattr(_shared, "load_model", loaded_again)
        _preload.start("tiny-gpt2")  # what apps/_serve.py does before Streamlit serves the first page
        at = page("Model_and_prompt.py").run()  # the page waits for the load, then takes the model
        _ok(at)
    assert any("tiny-gpt2: 3 layers, 4 query heads," in c.value for c in at.caption)
    assert not _preload.pending() and _preload.take("tiny-gpt2") is None  # handed over once
    assert frozen == [True] and gc.isenabled()  # the loader collected once, then froze what it loaded
    _shared.cached_model("tiny-llama")  # a model picked later: loaded by the page, then frozen
    assert frozen == [True, True]
    _preload.start("no-such-model")  # a failed load is left to the page, which shows the error line
    _preload.wait()
    assert _preload.take("no-such-model") is None
    at = page("Model_and_prompt.py", model="no-such-model").run()
    assert not at.exception and len(at.error) == 1 and "unknown model 'no-such-model'" in at.error[0].value


def test_empty_prompt_and_unknown_model_are_one_line_each():
    at = page("Model_and_prompt.py").run()
    at.text_area(key="w_prompt").set_value("   ").run()
    assert len(at.error) == 1 and "empty prompt" in at.error[0].value
    at.text_area(key="w_prompt").set_value("Hello there").run()
    _ok(at)
    at = page("Model_and_prompt.py", model="no-such-model").run()  # typed into the picker, or in a link
    assert not at.exception and len(at.error) == 1 and "unknown model 'no-such-model'" in at.error[0].value
    at.selectbox(key="w_model").set_value("tiny-llama").run()  # still usable
    _ok(at)
    assert any("tiny-llama: 3 layers" in c.value for c in at.caption)


def test_attention_page_and_a_shared_url():
    at = page("pages/1_Attention.py").run()
    _ok(at)
    at.number_input(key="w_layer").set_value(2).run()
    _ok(at)
    assert any(s.value == "Attention pattern L2H3" for s in at.subheader)
    assert len(at.get("plotly_chart")) == 3  # the thumbnails, the zoomed head, the detectors
    # A copied link: the same view comes back in a fresh session.
    url = {k: at.query_params[k] for k in ("prompt", "layer", "head")}
    assert url == {"prompt": "The Eiffel Tower is located in the city of", "layer": "2", "head": "3"}
    again = page("pages/1_Attention.py", prompt="A B C A B", layer=1, head=0).run()
    _ok(again)
    assert any(s.value == "Attention pattern L1H0" for s in again.subheader)
    assert again.text_input(key="w_prompt").value == "A B C A B"
    bad = page("pages/1_Attention.py", layer=99, head="x").run()  # out of range: the defaults, no crash
    _ok(bad)
    # A layer of a larger model, carried from another page or left in the widget after switching to a
    # 3-layer model, does not exist here: the page falls back instead of failing.
    carried = page("pages/1_Attention.py")
    carried.session_state["keep_layer"] = 18
    carried.run()
    _ok(carried)
    assert carried.number_input(key="w_layer").value == 2
    carried.session_state["w_layer"] = 7
    carried.run()
    _ok(carried)
    assert 0 <= carried.number_input(key="w_layer").value <= 2


def test_prompt_carries_over_to_the_next_page():
    at = page("Model_and_prompt.py").run()
    at.text_area(key="w_prompt").set_value("Paris is the capital of").run()
    at.switch_page("pages/2_Lens.py").run()
    _ok(at)
    assert at.text_area(key="w_prompt").value == "Paris is the capital of"


def test_lens_page_and_a_multi_token_answer():
    at = page("pages/2_Lens.py").run()
    _ok(at)
    assert any("sum to" in c.value for c in at.caption) and len(at.get("plotly_chart")) == 2
    at.text_input(key="w_answer").set_value(" Parisianism").run()
    assert len(at.error) == 1 and "token" in at.error[0].value
    at.text_input(key="w_answer").set_value(" Paris").run()
    _ok(at)


def test_lens_answers_a_new_prompt_with_the_models_top_prediction_and_colours_mlps_by_sign(tiny_models):
    import plotly.io

    from interp import direct_logit_attribution, logit_lens
    from interp.predictions import predict

    at = page("pages/2_Lens.py").run()
    at.text_area(key="w_prompt").set_value("Once upon a time there was a").run()
    _ok(at)
    top = predict(tiny_models["tiny-llama"], "Once upon a time there was a", k=2)
    assert [at.text_input(key="w_answer").value, at.text_input(key="w_wrong").value] == top.top_tokens[:2]
    lens, dla = (plotly.io.from_json(c.proto.spec).data for c in at.get("plotly_chart"))
    want = logit_lens(tiny_models["tiny-llama"], "Once upon a time there was a").top_tokens
    top_trace = next(t for t in lens if t.name.startswith("top-1"))
    assert list(top_trace.text) == [repr(t[0][0]) for t in want]  # each layer's top token, written on the chart
    answer_trace = next(t for t in lens if t.name.startswith("P("))
    assert answer_trace.y[-1] == pytest.approx(want[-1][0][1], abs=1e-4)  # not a flat 0: the model's own answer
    bars = next(t for t in dla if t.type == "bar")
    mlps = direct_logit_attribution(tiny_models["tiny-llama"], "Once upon a time there was a", *top.top_tokens[:2]).mlps
    assert list(bars.marker.color) == ["#2166ac" if float(v) >= 0 else "#b2182b" for v in mlps]  # blue helps
    at.text_input(key="w_answer").set_value(" dog").run()  # a chosen answer stays while the prompt does
    assert at.text_input(key="w_answer").value == " dog"


def test_circuits_page_patching_eap_and_bad_pairs():
    at = page("pages/3_Circuits.py", edges=40).run()
    _ok(at)
    assert any("cells in" in c.value for c in at.caption)
    assert at.metric[0].label == "Faithfulness of the circuit"
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # patching heatmap, EAP graph, faithfulness curve
    at.radio(key="w_method").set_value("attribution").run()
    _ok(at)
    at.slider(key="w_edges").set_value(10).run()
    _ok(at)
    at.text_input(key="w_corrupt").set_value("The Vatican is located in the city of").run()
    assert len(at.error) == 1 and "different lengths" in at.error[0].value
    at.text_input(key="w_corrupt").set_value("The Colosseum is located in the city of")
    at.text_input(key="w_answer").set_value(" Parisianism").run()
    assert len(at.error) == 1 and "token" in at.error[0].value


def test_head_page_for_a_head_and_an_mlp(tiny_models, tmp_path):
    import torch

    from interp.circuits.weights import copying_scores, head_weights
    from saes import SAEConfig, make_sae, save_sae

    at = page("pages/4_Head.py", node="head", layer=1, head=2).run()
    _ok(at)
    assert at.title[0].value == "L1H2"
    copying = copying_scores(head_weights(tiny_models["tiny-llama"]))[1, 2].item()
    assert any(m.label.startswith("OV copying") and m.value == f"{copying:+.3f}" for m in at.metric)
    assert len(at.get("plotly_chart")) == 3  # pattern, OV and QK
    at.radio(key="w_node").set_value("mlp").run()
    _ok(at)
    assert at.title[0].value == "MLP1" and "Load an SAE for layer 1" in at.info[0].value
    torch.manual_seed(0)
    save_sae(make_sae(SAEConfig("topk", 64, 48, k=4, hook_name="blocks.1.hook_mlp_out", model_name="tiny-llama")),
             tmp_path / "sae")
    at.session_state["keep_sae_dir"] = str(tmp_path / "sae")  # as the Features page leaves it
    at.run()
    _ok(at)
    assert "blocks.1.hook_mlp_out" in at.subheader[0].value and len(at.dataframe[0].value) == 10


def test_trace_send_to_editor_edit_and_undo():
    at = page("pages/5_Trace_and_edit.py", samples=2).run()
    _ok(at)
    at.button(key="run").click().run()
    _ok(at)
    assert any("subject corrupted" in c.value for c in at.caption) and at.get("plotly_chart")
    at.button(key="send").click().run()
    assert at.text_input(key="w_template").value == "{} is located in the city of"
    layer = at.number_input(key="w_edit_layer").value
    assert 0 <= layer < 3  # the trace's peak MLP layer
    at.number_input(key="cov").set_value(2048)
    at.button(key="edit").click().run()
    _ok(at)
    assert any(f"Edited layer {layer}" in c.value for c in at.caption)
    metrics = at.dataframe[0].value
    assert metrics["metric"].tolist()[:2] == ["efficacy success", "efficacy margin"] and len(metrics) == 6
    assert any("carries edits" in w.value for w in at.warning)
    assert any("Edited by ROME" in w.value for w in at.sidebar.warning)  # every page shows the edit
    at.button(key="undo").click().run()
    _ok(at)
    assert not [w for w in at.warning if "carries edits" in w.value]


def test_trace_with_a_subject_not_in_the_prompt():
    at = page("pages/5_Trace_and_edit.py", samples=2, trace_subject="The Colosseum").run()
    at.button(key="run").click().run()
    assert not at.exception and len(at.error) == 1 and "The Colosseum" in at.error[0].value


def test_probes_and_the_steering_playground():
    at = page("pages/6_Probes_and_steering.py").run()
    _ok(at)
    at.button(key="run").click().run()
    _ok(at)
    assert any("best layer" in c.value for c in at.caption)
    at.number_input(key="new_tokens").set_value(5)
    at.slider(key="w_alpha").set_value(8.0)
    at.button(key="steer").click().run()
    _ok(at)
    assert at.metric[0].label.startswith("P(positive)") and 0 <= float(at.metric[0].value) <= 1
    assert list(at.table[0].value.columns)[:3] == ["prompt", "α = 0", "α = 8"]


def _sae_and_store(tmp_path, name: str, model_name: str = "tiny-llama", seed: int = 0):
    import torch

    from interp.models import load_model
    from saes import SAEConfig, make_sae, save_sae
    from saes.features.extract import ExtractConfig, extract_features

    torch.manual_seed(seed)
    save_sae(make_sae(SAEConfig("topk", 64, 48, k=4, hook_name="blocks.1.hook_resid_post", model_name=model_name)),
             tmp_path / name)
    if model_name == "tiny-llama":
        extract_features(load_model("tiny-llama"), [tmp_path / name], tmp_path / f"{name}-store",
                         ExtractConfig(corpus="bbc-news", tokens=2000, ctx=32, contexts_per_shard=16))
    return str(tmp_path / name), str(tmp_path / f"{name}-store")


def test_features_page_dashboard_search_steering_and_mismatches(tmp_path):
    sae, store = _sae_and_store(tmp_path, "a")
    other_sae, _ = _sae_and_store(tmp_path, "b", seed=1)
    at = page("pages/7_Features.py").run()
    _ok(at)
    assert at.info and "interp sae extract" in at.info[0].value  # nothing given yet: how to make one
    at.text_input(key="w_store").set_value(store).run()
    _ok(at)
    assert any("48 features" in c.value for c in at.caption)
    at.number_input(key="w_feature").set_value(3).run()
    assert any("Feature 3 fires on" in c.value for c in at.caption) and at.get("plotly_chart")
    at.text_input(key="token").set_value(" the").run()
    _ok(at)
    assert len(at.dataframe) == 1
    hits = at.dataframe[0].value
    at.session_state["token_hits"] = {"selection": {"rows": [1], "columns": []}}  # what a click on row 1 sets
    at.run()
    _ok(at)
    assert at.number_input(key="w_feature").value == int(hits["feature"][1])
    assert any(f"Feature {int(hits['feature'][1])} fires on" in c.value for c in at.caption)
    at.button(key="run").click().run()
    _ok(at)
    shown = [h.proto.body for h in at.get("html")]
    steered = [h for h in shown if "clamped at" in h]
    assert steered and "<span" in steered[0] and "*" not in steered[0]  # highlighted, no markdown marker leaking
    at.text_input(key="w_sae_dir").set_value(other_sae).run()  # a store for another SAE
    assert len(at.error) == 1 and "extracted from another SAE" in at.error[0].value
    at.text_input(key="w_sae_dir").set_value(sae).run()
    _ok(at)
    at.text_input(key="w_store").set_value(str(tmp_path / "nowhere")).run()
    assert len(at.error) == 1 and "not a feature store" in at.error[0].value
    _release_stores()


def test_features_page_refuses_an_sae_for_another_model(tmp_path):
    gpt2_sae, _ = _sae_and_store(tmp_path, "g", model_name="tiny-gpt2")
    at = page("pages/7_Features.py", sae_dir=gpt2_sae).run()
    assert not at.exception and len(at.error) == 1 and "trained on 'tiny-gpt2'" in at.error[0].value
    at.text_input(key="w_sae_dir").set_value("").run()
    assert not at.exception and at.info  # usable again


def _release_stores():
    import gc

    import streamlit as st

    st.cache_resource.clear()  # the cached store's DuckDB connection, closed before the interpreter exits
    gc.collect()


def test_token_search_and_weights_page():
    import json

    at = page("pages/8_Token_search_and_weights.py", gcg_steps=3).run()
    _ok(at)
    assert len(at.get("plotly_chart")) == 3  # copying, the full circuit, mimetic
    heat = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]  # the rate, on its own range: no saturation
    assert heat["colorscale"][0][1] != heat["colorscale"][-1][1] and heat["zmin"] == 0 and 0 < heat["zmax"] <= 1
    at.radio(key="copy_measure").set_value("Σλ/Σ|λ| (eigenvalues)").run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["zmin"] == -1
    at.button(key="compose").click().run()
    assert len(at.get("plotly_chart")) == 4  # and composition, on request
    at.button(key="gcg").click().run()
    _ok(at)
    assert at.success and "in 3 steps" in at.success[0].value or "Target reached" in at.success[0].value
    assert at.code[0].value.startswith("The weather today is") and at.code[0].value.endswith(" and the sky is")
    at.number_input(key="vis_steps").set_value(2)
    at.button(key="vis").click().run()
    _ok(at)
    assert at.code[-1].value.startswith("The movie was")


def test_features_page_demo_job_trains_and_fills_the_page(monkeypatch):
    """A new user with no SAE: the page offers the demo with an estimate; the button starts a background
    job (two real `interp` commands in their own process), the page shows its progress, and once it is
    done the page fills in with the demo's SAE and store."""
    import sys
    import time

    monkeypatch.setenv("INTERP_DEMO_TOKENS", "0.02")  # 10k training tokens, 4k in the store: seconds
    monkeypatch.syspath_prepend(str(APPS))
    import _jobs

    at = page("pages/7_Features.py").run()
    _ok(at)
    assert any("about" in m.value and "min on this machine" in m.value for m in at.markdown)
    at.button(key="demo_start").click().run()
    _ok(at)
    job = _jobs.status("demo-sae-tiny-llama")
    assert job.state in ("running", "done"), job
    deadline = time.time() + 300
    while job.state == "running" and time.time() < deadline:
        time.sleep(2)
        job = _jobs.status("demo-sae-tiny-llama")
    assert job.state == "done", (job.error, job.log_tail[-800:])
    assert "interp: estimate" not in job.log_tail or "about" in job.log_tail
    at = page("pages/7_Features.py").run()  # a later visit: the demo fills the empty inputs
    _ok(at)
    assert "demo-sae-tiny-llama" in at.text_input(key="w_store").value
    assert any("Feature 0 fires on" in c.value for c in at.caption) and at.get("plotly_chart")
    sys.modules.pop("_jobs", None)
    _release_stores()


def test_job_progress_lines_parse():
    import sys

    sys.path.insert(0, str(APPS))
    import _jobs

    tail = ("== Train\nSAE topk blocks.1.hook_resid_post: 59/488 step [00:03<00:28, 15.0step/s], FVU=0.3\n"
            "extract: 30.7k/200k tok [00:07<00:42, 3973.00tok/s], shard 0\n")
    p = _jobs.progress_of(tail)
    assert (p.desc, p.n, p.total, p.remaining) == ("extract", 30700, 200000, "00:42")
    assert p.fraction == pytest.approx(0.1535)
    assert _jobs.progress_of("nothing yet") is None


def _wait(_jobs, name, until, seconds=120):
    import time

    deadline = time.time() + seconds
    job = _jobs.status(name)
    while not until(job) and time.time() < deadline:
        time.sleep(0.3)
        job = _jobs.status(name)
    return job


def _runner(_jobs, name):
    import json

    return int(json.loads((_jobs.job_dir(name) / "status.json").read_text())["pid"])


def test_jobs_report_their_exit_status_signal_and_last_error_and_cancel_and_resume(monkeypatch):
    """A failing step shows its exit status and error line (never the estimate line); a step killed by a
    signal shows the signal; Cancel stops the whole process group as 'cancelled'; a start resumes."""
    import os
    import signal
    import subprocess
    import sys

    monkeypatch.syspath_prepend(str(APPS))
    import _jobs
    from _jobrun import how_it_ended, last_error

    assert how_it_ended(2) == "exit status 2" and how_it_ended(-9) == "killed by SIGKILL (signal 9)"
    assert last_error("interp: estimate: about 54 min\nstep 3/9\n") == ""
    said = "interp: estimate: x\ninterp: error: no such corpus 'x'\ninterp: note: y\ninterp: warning: z\n"
    assert last_error(said) == "interp: error: no such corpus 'x'"  # the CLI's error line, not its reports
    assert last_error("usage: ...\ninterp sae train: error: argument --k: invalid int\n").endswith("invalid int")
    long = ["sae", "train", "--model", "tiny-llama", "--hook", "blocks.1.hook_resid_post", "--tokens", "50000000",
            "--out", str(_jobs.job_dir("long") / "sae")]
    bad = ["sae", "train", "--model", "tiny-llama", "--hook", "blocks.1.hook_resid_post", "--corpus", "no-such-corpus",
           "--out", str(_jobs.job_dir("bad") / "sae")]

    _jobs.start("bad", [("Train", bad)])
    job = _wait(_jobs, "bad", lambda j: j.state != "running")
    assert job.state == "failed" and job.error.startswith("step 1 (Train) ended with exit status 2: interp: ")
    assert "no-such-corpus" in job.error and "estimate" not in job.error

    _jobs.start("long", [("Train", long)], estimate=90.0)
    job = _wait(_jobs, "long", lambda j: "step" in j.log_tail)  # it is training
    assert job.state == "running" and job.estimate == 90.0
    child = int(subprocess.run(["pgrep", "-P", str(_runner(_jobs, "long"))], capture_output=True,
                               text=True).stdout.split()[0])
    os.kill(child, signal.SIGKILL)  # as the OOM killer would
    job = _wait(_jobs, "long", lambda j: j.state != "running")
    assert job.state == "failed" and "killed by SIGKILL (signal 9)" in job.error and "estimate" not in job.error

    _jobs.start("long", [("Train", long)])  # resume, then cancel from the page
    _wait(_jobs, "long", lambda j: j.log_tail.count("== Train") == 2)
    runner = _runner(_jobs, "long")
    job = _jobs.cancel("long")
    assert job.state == "cancelled" and "resume" in job.error
    assert not subprocess.run(["pgrep", "-g", str(runner)], capture_output=True).stdout  # the group is gone
    assert _jobs.start("long", [("Train", long)]).state == "running"
    _jobs.cancel("long")
    sys.modules.pop("_jobs", None)


def test_attribution_graph_page_demo_job_graph_dashboard_and_ablation(monkeypatch):
    """A new user with no transcoders: the page offers a demo set with an estimate, a background job trains a
    transcoder for every layer and a store of their features, and the page then draws the graph. A clicked
    feature node shows its dashboard from the store, and the ablate button shows the logits change."""
    import json
    import sys
    import time

    monkeypatch.setenv("INTERP_DEMO_TOKENS", "0.02")
    monkeypatch.syspath_prepend(str(APPS))
    import _jobs

    at = page("pages/9_Attribution_graph.py").run()
    _ok(at)
    assert any("min on this machine" in m.value for m in at.markdown)
    at.button(key="demo_tc_start").click().run()
    _ok(at)
    deadline = time.time() + 300
    job = _jobs.status("demo-transcoders-tiny-llama")
    while job.state == "running" and time.time() < deadline:
        time.sleep(2)
        job = _jobs.status("demo-transcoders-tiny-llama")
    assert job.state == "done", (job.error, job.log_tail[-800:])
    at = page("pages/9_Attribution_graph.py", prompt="The Eiffel Tower is in the city of").run()
    _ok(at)
    assert "demo-transcoders-tiny-llama" in at.text_input(key="w_transcoders").value
    assert at.get("plotly_chart") and any("Replacement score" in m.label for m in at.metric)
    told = next(c.value for c in at.caption if "The demo set" in c.value)
    assert "2,048 tokens" in told and " min on this machine" in told and "replacement score is 0." in told
    at.slider(key="w_node_t").set_value(0.95).run()  # a set trained on 2k tokens: its features are quiet
    from interp.figures.attribution_graph import graph_figure  # the chart's nodes carry their ids for clicks

    fig = at.get("plotly_chart")[0].proto.spec
    ids = [d for trace in json.loads(fig)["data"] if trace.get("name") == "cross layer transcoder"
           for d in trace["customdata"]]
    assert ids and graph_figure  # a feature node to click
    at.session_state["graph_node"] = ids[0]  # what a click on the node sets
    at.run()
    _ok(at)
    assert any("Feature dashboard" in m.value for m in at.markdown)
    inputs = at.dataframe[0].value  # ranked by |weight|, each named readably
    assert len(inputs) and list(inputs["weight"].abs()) == sorted(inputs["weight"].abs(), reverse=True)
    assert inputs["node"].str.match(r"^(L\d+ #\d+ @\d+ |error L\d+ @\d+|token @\d+ )").all()
    at.button(key="pin").click().run()  # pinning the clicked node (it crashed: the box was drawn already)
    _ok(at)
    assert at.text_input(key="w_pinned").value == ids[0] and at.button(key="pin").label == "Unpin this node"
    at.text_input(key="w_pinned").set_value(f"{ids[0]},{ids[1]}").run()
    at.checkbox(key="only_pinned").check().run()
    _ok(at)
    sub = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    shown = {c for trace in sub if trace.get("customdata") for c in trace["customdata"]}
    assert {ids[0], ids[1]} <= shown and any(trace.get("name") == "logit" for trace in sub)
    at.text_area(key="w_supernodes").set_value(f"pair: {ids[0]}, {ids[1]}").run()
    _ok(at)
    sub = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["customdata"] for t in sub if t.get("name") == "supernode"] == [["supernode:pair"]]
    at.checkbox(key="only_pinned").uncheck()
    at.text_area(key="w_supernodes").set_value("")
    at.checkbox(key="hide_errors").check().run()
    _ok(at)
    data = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert not any(t.get("name") == "mlp reconstruction error" for t in data)
    at.button(key="intervene").click().run()
    _ok(at)
    table = at.dataframe[-1].value
    assert list(table.columns)[:5] == ["token", "before", "frozen", "predicted", "real"]
    assert (table["frozen"] - table["predicted"]).abs().max() < 1e-3
    assert (table["before"] != table["frozen"]).any()
    # the page reran for the click and the button without recomputing the graph (cached per input)
    sys.modules.pop("_jobs", None)
    _release_stores()


@pytest.mark.parametrize("name", ["Model_and_prompt.py", *sorted(p.name for p in (APPS / "pages").glob("*.py"))])
def test_every_page_opens_on_gemma3(monkeypatch, name):
    """Each page's default view on tiny-gemma3 (sandwich norms, sliding windows, one KV head, BOS)."""
    monkeypatch.setenv("INTERP_MODEL", "tiny-gemma3")
    at = page(name if name == "Model_and_prompt.py" else f"pages/{name}").run()
    _ok(at)
    assert at.selectbox(key="w_model").value == "tiny-gemma3"


def test_runs_on_the_shared_model_take_turns_across_threads(monkeypatch):
    """Two sessions are two threads of one server: a run that hooks the model waits for the other's end."""
    import threading
    import time

    monkeypatch.syspath_prepend(str(APPS))
    from _shared import on_model, serialised

    order = []
    inside = threading.Event()

    @serialised
    def slow():
        order.append("a in")
        inside.set()
        time.sleep(0.3)
        with on_model():  # re-entrant: a serialised function calling another does not wait on itself
            order.append("a nested")
        order.append("a out")

    def other():
        inside.wait()
        with on_model():
            order.append("b")

    threads = [threading.Thread(target=slow), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["a in", "a nested", "a out", "b"]
