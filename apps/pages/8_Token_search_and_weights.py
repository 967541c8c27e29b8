"""What inputs and weights do: GCG token search with a live loss curve, feature visualisation by
prompt optimisation (a concept direction or an SAE feature), and the weights read without any
prompt: OV copying, a head's QK/OV circuit, composition between heads and mimetic statistics."""

from __future__ import annotations

import sys
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (cached_copying, cached_head_weights, cached_model, cached_sae, edits_key,  # noqa: E402
                     head_from_selection, on_model, pick_model, remembered, serialised, shared, show_error)

from interp import InterpError  # noqa: E402
from interp.circuits.weights import composition_scores, full_circuit, mimetic_stats  # noqa: E402
from interp.figures import copying_figure, full_circuit_figure  # noqa: E402
from interp.gcg import GCGConfig, direction_objective, feature_objective, gcg, target_objective  # noqa: E402
from interp.representations.probes import SHIPPED, collect_activations, load_dataset  # noqa: E402
from interp.representations.steering import mean_difference  # noqa: E402


RATE = "top-1 rate over 500 corpus words"


@st.cache_data(show_spinner="Each head's OV circuit on 500 words…", max_entries=2)
def cached_copying_rate(name: str, edited: str):
    from interp.circuits.weights import copying_rate, corpus_words

    return copying_rate(cached_head_weights(name, edited), corpus_words(cached_model(name), 500))


@st.cache_resource(show_spinner="Composition of every pair of heads…", max_entries=2)
def cached_composition(name: str, edited: str):
    return composition_scores(cached_head_weights(name, edited))


@st.cache_resource(show_spinner="Mimetic statistics…", max_entries=2)
def cached_mimetic(name: str, edited: str):
    return mimetic_stats(cached_head_weights(name, edited))


@st.cache_resource(show_spinner="The concept direction…", max_entries=8)
@serialised
def cached_direction(name: str, dataset: str, layer: int, edited: str):
    ds = load_dataset(dataset)
    v = mean_difference(collect_activations(cached_model(name), ds, [layer]), layer, ds.labels[-1])
    return v / v.norm()


def live_search(model, prompt: str, objective, config: GCGConfig, title: str):
    """Run GCG, redrawing the loss curve after every step."""
    chart, status = st.empty(), st.empty()
    losses: list[float] = []

    def on_step(step: int, loss: float, best: str) -> None:
        losses.append(loss)
        chart.plotly_chart(go.Figure(go.Scatter(y=losses, mode="lines+markers"),
                                     layout={"title": f"{title}: best loss so far", "height": 300,
                                             "xaxis_title": "step", "yaxis_title": "loss"}),
                           width="stretch", key=f"live-{title}-{step}")
        status.caption(f"step {step}/{config.steps}: {best!r}")

    with on_model():
        res = gcg(model, prompt, objective, config, on_step=on_step)
    chart.plotly_chart(res.figure(), width="stretch", key=f"done-{title}")
    return res


st.set_page_config(page_title="Token search and weights", layout="wide")
st.title("Token search and weights")
name, model = pick_model()
cfg = model.cfg
ek = edits_key(model)
clicked = head_from_selection(st.session_state.get("copying"))
if clicked is not None and st.session_state.get("copying_applied") != clicked:  # a copying cell opens that head
    st.session_state["copying_applied"] = clicked
    st.switch_page("pages/4_Head.py", query_params={"node": "head", "layer": clicked[0], "head": clicked[1]})
if clicked is None:
    st.session_state["copying_applied"] = None

search, vis, weights = st.tabs(["GCG", "Feature visualisation", "Weights"])

with search:
    gcg_prompt = shared(st.text_input, "Prompt ({optim} marks the span to optimise)", "gcg_prompt",
                        "The weather today is{optim} and the sky is")
    col_t, col_s, col_w, col_i = st.columns(4)
    target = shared(col_t.text_input, "Target continuation", "gcg_target", " purple")
    steps = int(shared(col_s.number_input, "Steps", "gcg_steps", 20, min_value=1, max_value=500))
    width = int(shared(col_w.number_input, "Candidates per step", "gcg_width", 64, min_value=8, max_value=1024))
    init = shared(col_i.text_input, "Initial span", "gcg_init", " x x x x x")
    if st.button("Search", type="primary", key="gcg"):
        try:
            res = live_search(model, gcg_prompt, target_objective(model, target),
                              GCGConfig(steps=steps, search_width=width, topk=min(width, 256), optim_init=init), "GCG")
            st.success(f"{'Target reached' if res.success else 'Best found'} in {len(res.losses)} steps "
                       f"({res.seconds:.1f} s): loss {res.extra['initial_loss']:.2f} → {res.best_loss:.3f}")
            st.code(gcg_prompt.replace("{optim}", res.best_string), language=None)
        except InterpError as err:
            show_error(err)

with vis:
    sae_dir = remembered("sae_dir", "")
    sources = ["concept direction"] + (["SAE feature"] if sae_dir else [])
    source = st.radio("Maximise", sources, horizontal=True, key="vis_source",
                      help="an SAE loaded on the Features page adds its features here")
    vis_prompt = shared(st.text_input, "Prompt ({optim} marks the span to optimise)", "vis_prompt",
                        "The movie was{optim}")
    col_a, col_b, col_c = st.columns(3)
    if source == "concept direction":
        concepts = sorted((n for n in SHIPPED if load_dataset(n).task == "sequence"), key=lambda n: n != "sentiment")
        dataset = col_a.selectbox("Concept (towards the dataset's last label)", concepts, key="vis_dataset")
        layer = int(shared(col_b.number_input, "Layer", "vis_layer", cfg.n_layers // 3, min_value=0,
                           max_value=cfg.n_layers - 1))
    else:
        feature = int(shared(col_a.number_input, "Feature", "feature", 0, min_value=0))
    fluency = float(col_c.slider("Fluency penalty λ (nats per token)", 0.0, 2.0, 0.0, 0.1, key="fluency"))
    vis_steps = int(st.number_input("Steps", 1, 200, 10, key="vis_steps"))
    if st.button("Optimise", type="primary", key="vis"):
        try:
            if source == "concept direction":
                objective = direction_objective(f"blocks.{layer}.hook_resid_post",
                                                cached_direction(name, dataset, layer, ek),
                                                name=f"{dataset} direction at L{layer}")
            else:
                from saes.io import resolve_hook

                sae = cached_sae(sae_dir)
                resolve_hook(model, sae)
                objective = feature_objective(sae.to(cfg.device), feature)
            res = live_search(model, vis_prompt, objective,
                              GCGConfig(steps=vis_steps, search_width=64, topk=64, optim_init=" and it was really",
                                        fluency=fluency, early_stop=False), "visualisation")
            st.success(f"objective {-res.extra['initial_loss']:.2f} → {-res.best_loss:.2f} in {res.seconds:.1f} s")
            st.code(vis_prompt.replace("{optim}", res.best_string), language=None)
        except InterpError as err:
            show_error(err)

with weights:
    try:
        hw = cached_head_weights(name, ek)
        measure = st.radio("Copying measure", [RATE, "Σλ/Σ|λ| (eigenvalues)"], horizontal=True, key="copy_measure",
                           help="Σλ/Σ|λ| sits near ±1 for many heads (a few large eigenvalues decide it); the rate "
                                "counts how many ordinary words each head copies, and spreads them apart")
        fig = (copying_figure(cached_copying_rate(name, ek), f"OV copying: {RATE} (own logit top among the words)",
                              signed=False) if measure == RATE else copying_figure(cached_copying(name, ek)))
        st.plotly_chart(fig, width="stretch", key="copying", on_select="rerun", selection_mode="points")
        st.caption("Click a head to open it.")
        col_l, col_h, col_k = st.columns(3)
        layer_w = int(shared(col_l.number_input, "Layer", "layer", min(18, cfg.n_layers - 1), min_value=0,
                             max_value=cfg.n_layers - 1))
        head_w = int(shared(col_h.number_input, "Head", "head", min(6, cfg.n_heads - 1), min_value=0,
                            max_value=cfg.n_heads - 1))
        kind = col_k.radio("Circuit", ["ov", "qk"], horizontal=True, key="circuit")
        words = [w for w in shared(st.text_input, "Tokens (comma-separated, mind the spaces)", "words",
                                   " Paris, London, Rome, cat, dog, red, blue").split(",")]
        ids = [model.tokenizer.encode(w if w.startswith(" ") else " " + w.strip(), add_special_tokens=False)[0]
               for w in words if w.strip()]
        labels = [repr(model.tokenizer.decode([i])) for i in ids]
        rows, cols = ("attended token", "output logit") if kind == "ov" else ("query token", "key token")
        st.plotly_chart(full_circuit_figure(full_circuit(hw, kind, layer_w, head_w, ids).float().cpu(), labels,
                                            f"L{layer_w}H{head_w} {kind.upper()} circuit", rows, cols),
                        width="stretch", key="full_circuit")
        if st.button("Composition between every pair of heads (about 20 s for 270 heads on a CPU)", key="compose"):
            st.session_state["composed"] = (name, ek)
        if st.session_state.get("composed") == (name, ek):
            st.plotly_chart(cached_composition(name, ek).figure(), width="stretch", key="composition")
        st.plotly_chart(cached_mimetic(name, ek).figure(), width="stretch", key="mimetic")
    except InterpError as err:
        show_error(err)
