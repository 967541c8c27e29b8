"""What is linearly readable, and what adding it does: probe accuracy and selectivity against layer
for a dataset, and a steering playground (a mean-difference vector added at one layer, scaled by α,
with generations and a probe's score of them)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (cached_model, edits_key, on_model, pick_model, serialised, shared, show_error,  # noqa: E402
                     with_progress)

from interp import InterpError  # noqa: E402
from interp.figures import probe_figure  # noqa: E402
from interp.representations.probes import SHIPPED, collect_activations, load_dataset, probe_layers  # noqa: E402
from interp.representations.steering import mean_difference, probe_scorer, steering_curve  # noqa: E402

STEERABLE = [n for n in SHIPPED if load_dataset(n).task == "sequence"]


@st.cache_data(show_spinner="Activations, then a cross-validated probe and its control per layer…", max_entries=16)
@serialised
@with_progress("Probes")
def cached_probes(name: str, dataset: str, every: int, edited: str) -> dict:
    model = cached_model(name)
    layers = list(range(0, model.cfg.n_layers, every))
    return probe_layers(collect_activations(model, load_dataset(dataset), layers), folds=3).to_dict()


@st.cache_resource(show_spinner="The steering vector and its probe scorer…", max_entries=8)
@serialised
def cached_steering(name: str, dataset: str, layer: int, positive: str, edited: str):
    model = cached_model(name)
    ds = load_dataset(dataset)
    vector = mean_difference(collect_activations(model, ds, [layer]), layer, positive)
    return vector, probe_scorer(model, ds, layer, positive, folds=3)


st.set_page_config(page_title="Probes and steering", layout="wide")
st.title("Linear probes and steering vectors")
name, model = pick_model()
cfg = model.cfg
ek = edits_key(model)

st.header("Probes")
col_d, col_e = st.columns(2)
dataset = shared(col_d.selectbox, "Dataset", "dataset", "sentiment", options=list(SHIPPED))
every = int(shared(col_e.number_input, "Probe every n-th layer", "every", max(1, cfg.n_layers // 10), min_value=1,
                   max_value=cfg.n_layers))
if st.button("Probe", type="primary", key="run"):
    st.session_state["probed"] = (name, dataset, every)
if st.session_state.get("probed") == (name, dataset, every):
    try:
        r = cached_probes(name, dataset, every, ek)
    except InterpError as err:
        show_error(err)
    st.plotly_chart(probe_figure([r]), width="stretch", key="probes")
    st.caption(f"{r['dataset']}: best layer {r['best_layer']} with accuracy {r['best_accuracy']:.3f} "
               f"(chance {r['chance']:.2f}), {r['n_train']} train / {r['n_test']} test items; selectivity is "
               "accuracy minus the control task's (random labels per word type, Hewitt & Liang 2019).")

st.header("Steering playground")
col_ds, col_pos, col_l, col_a = st.columns(4)
steer_ds = shared(col_ds.selectbox, "Concept dataset", "steer_dataset", "sentiment", options=STEERABLE)
labels = load_dataset(steer_ds).labels
positive = col_pos.selectbox("Towards", labels, index=len(labels) - 1, key="positive")
layer = int(shared(col_l.number_input, "Layer", "steer_layer", cfg.n_layers // 3, min_value=0,
                   max_value=cfg.n_layers - 1))
alpha = float(shared(col_a.slider, "α (multiples of the mean difference)", "alpha", 4.0, min_value=-12.0,
                     max_value=12.0, step=0.5))
prompts = [p for p in shared(st.text_area, "Prompts (one per line)", "steer_prompts",
                             "I went to see the movie and\nThe food at the new place").splitlines() if p.strip()]
new_tokens = int(st.number_input("New tokens", 5, 60, 20, key="new_tokens"))
if st.button("Generate", type="primary", key="steer"):
    try:
        vector, scorer = cached_steering(name, steer_ds, layer, positive, ek)
        with st.spinner("Generating with and without the vector (KV-cached), then scoring…"), on_model():
            curve = steering_curve(model, vector, layer, [0.0, alpha], prompts, scorer, new_tokens)
    except InterpError as err:
        show_error(err)
    st.metric(f"P({positive}) of the generations, probe at L{layer}", f"{curve.mean_score[1]:.3f}",
              delta=f"{curve.mean_score[1] - curve.mean_score[0]:+.3f} against α = 0")
    st.table({"prompt": curve.prompts, "α = 0": curve.generations[0], f"α = {alpha:g}": curve.generations[1],
              f"P({positive}) at α = {alpha:g}": [round(s, 3) for s in curve.scores[1]]})
    st.caption(f"‖v‖ = {float(vector.norm()):.2f}, added to blocks.{layer}.hook_resid_post at every position; "
               f"{curve.seconds:.1f} s.")
