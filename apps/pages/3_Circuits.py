"""Which components carry the answer, causally: exact and attribution patching of a clean/corrupt
pair per site, and the EAP circuit as a graph whose nodes click through to the Head page."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (cached_model, edits_key, pick_model, prompt_input, serialised, shared, show_error,  # noqa: E402
                     with_progress)

from interp import InterpError  # noqa: E402
from interp.circuits.attribution import attribution_sweep  # noqa: E402
from interp.circuits.eap import discover_circuit, edge_attribution, faithfulness_curve, node_component  # noqa: E402
from interp.circuits.patching import SITES, patch_sweep  # noqa: E402
from interp.figures import patch_figure  # noqa: E402
from interp.metrics import make_task  # noqa: E402

SIZES = (10, 30, 100, 300, 1000, 3000)


def _task(name, clean, corrupt, answer, wrong):
    return make_task(cached_model(name), clean, corrupt, answer, wrong)


@st.cache_data(show_spinner="Patching…", max_entries=32)
@serialised
@with_progress("Patching")
def cached_patch(name, clean, corrupt, answer, wrong, site, method, edited):
    task = _task(name, clean, corrupt, answer, wrong)
    if method == "exact":
        return patch_sweep(cached_model(name), task, site)
    return attribution_sweep(cached_model(name), task, [site])[site]


@st.cache_resource(show_spinner="Edge attribution patching…", max_entries=8)
@serialised
@with_progress("Edge attribution patching")
def cached_eap(name, clean, corrupt, answer, wrong, edited):
    return edge_attribution(cached_model(name), _task(name, clean, corrupt, answer, wrong))


@st.cache_resource(show_spinner="Faithfulness of the circuit…", max_entries=64)
@serialised
def cached_circuit(name, clean, corrupt, answer, wrong, n_edges, edited):
    scores = cached_eap(name, clean, corrupt, answer, wrong, edited)
    return discover_circuit(cached_model(name), _task(name, clean, corrupt, answer, wrong), n_edges, scores=scores)


@st.cache_resource(show_spinner="Faithfulness curve…", max_entries=8)
@serialised
@with_progress("Faithfulness curve")
def cached_curve(name, clean, corrupt, answer, wrong, edited):
    scores = cached_eap(name, clean, corrupt, answer, wrong, edited)
    return faithfulness_curve(cached_model(name), _task(name, clean, corrupt, answer, wrong), SIZES, scores=scores)


st.set_page_config(page_title="Circuits", layout="wide")
st.title("Circuits: patching and EAP")
name, model = pick_model()
cfg = model.cfg
clicked = [str(p.get("customdata", "")) for p in (st.session_state.get("graph") or {}).get("selection", {})
           .get("points", [])]
target = node_component(clicked[0], cfg.n_heads, cfg.n_key_value_heads) if clicked else None
if target is not None and st.session_state.get("graph_applied") != clicked[0]:  # a node click opens it, once
    st.session_state["graph_applied"] = clicked[0]
    st.switch_page("pages/4_Head.py", query_params=target)
if not clicked:
    st.session_state["graph_applied"] = None

col_c, col_k = st.columns(2)
with col_c:
    clean = prompt_input("Clean prompt")
corrupt = shared(col_k.text_input, "Corrupt prompt (same token length)", "corrupt",
                 "The Colosseum is located in the city of")
col_a, col_w, col_s, col_m = st.columns(4)
answer = shared(col_a.text_input, "Answer", "answer", " Paris")
wrong = shared(col_w.text_input, "Wrong answer", "wrong", " Rome")
site = shared(col_s.selectbox, "Site", "site", "resid_pre", options=list(SITES))
method = shared(col_m.radio, "Method", "method", "exact", options=["exact", "attribution"], horizontal=True)
ek = edits_key(model)
args = (name, clean, corrupt, answer, wrong)

try:
    _task(*args)  # bad pairs stop here, with one line
    result = cached_patch(*args, site, method, ek)
    st.plotly_chart(patch_figure(result), width="stretch", key="patch")
    st.caption(f"{result.values.numel()} cells in {result.seconds:.2f} s; 1 = clean behaviour "
               f"({result.clean_baseline:.3f}), 0 = corrupt ({result.corrupt_baseline:.3f}).")

    st.subheader("EAP circuit")
    total = int(cached_eap(*args, ek).graph.valid.sum())
    n_edges = int(shared(st.slider, "Edges kept (the strongest by |EAP score|)", "edges", min(100, total),
                         min_value=1, max_value=min(1000, total)))
    circuit = cached_circuit(*args, n_edges, ek)
    st.metric("Faithfulness of the circuit", f"{circuit.faithfulness:.2f}",
              help=f"{len(circuit.edges)} of {circuit.n_edges_total:,} edges, {len(circuit.nodes)} nodes; every other "
                   "edge patched to the corrupt run; 1 = the whole model's behaviour")
    left, right = st.columns([3, 2])
    left.plotly_chart(circuit.figure(cfg.n_layers), width="stretch", key="graph", on_select="rerun",
                      selection_mode="points")
    left.caption("Click a head or MLP node to open what it reads and writes.")
    right.plotly_chart(cached_curve(*args, ek).figure(), width="stretch", key="curve")
    right.dataframe([{"from": e["src"], "to": e["dst"] if e["dst"] == e["input"] else f"{e['dst']}.{e['input']}",
                      "score": round(e["score"], 4)}
                     for e in circuit.edges[:15]], hide_index=True)
except InterpError as err:
    show_error(err)
