"""Which heads attend where: every head's pattern as a thumbnail, one head zoomed with a hover
view, and the head detectors; a click on a thumbnail or a detector cell picks the head."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (apply_click, cached_model, edits_key, pick_model, prompt_input, serialised, shared,  # noqa: E402
                     show_error, token_attention_html)

from interp import InterpError, attention_patterns, detect_heads  # noqa: E402
from interp.circuits.attention import AttentionPatterns  # noqa: E402
from interp.figures import attention_figure, attention_grid_figure  # noqa: E402


@st.cache_data(show_spinner="Attention of every head…", max_entries=32)
@serialised
def cached_patterns(name: str, prompt: str, edited: str) -> AttentionPatterns:
    return attention_patterns(cached_model(name), prompt)


@st.cache_data(show_spinner="Scoring heads on repeated random tokens…", max_entries=8)
@serialised
def cached_head_scores(name: str, edited: str):
    return detect_heads(cached_model(name), n_seqs=8, seq_len=50)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_grid(name: str, prompt: str, edited: str):
    return attention_grid_figure(cached_patterns(name, prompt, edited))


@st.cache_data(show_spinner=False, max_entries=8)
def cached_scores_figure(name: str, edited: str):
    return cached_head_scores(name, edited).figure()


st.set_page_config(page_title="Attention", layout="wide")
st.title("Attention and heads")
name, model = pick_model()
cfg = model.cfg
apply_click("grid")
apply_click("detectors")
prompt = prompt_input()
ek = edits_key(model)
try:
    result = cached_patterns(name, prompt, ek)
except InterpError as err:
    show_error(err)


@st.fragment
def zoom(result: AttentionPatterns) -> None:
    """The chosen head, zoomed; changing the layer or head reruns only this part of the page."""
    col_layer, col_head = st.columns(2)
    layer = int(shared(col_layer.number_input, "Layer", "layer", min(18, cfg.n_layers - 1), min_value=0,
                       max_value=cfg.n_layers - 1))
    head = int(shared(col_head.number_input, "Head", "head", min(6, cfg.n_heads - 1), min_value=0,
                      max_value=cfg.n_heads - 1))
    one = AttentionPatterns(result.pattern[layer:layer + 1, head:head + 1], [layer], [head], result.tokens, 0.0)
    st.subheader(f"Attention pattern L{layer}H{head}")
    st.plotly_chart(attention_figure(one, layer, head), width="stretch", key="zoom")
    token_attention_html(result.tokens, result.pattern[layer, head])


left, right = st.columns([1, 1])
with left:
    st.plotly_chart(cached_grid(name, prompt, ek), width="stretch", key="grid", on_select="rerun",
                    selection_mode="points")
with right:
    zoom(result)

st.subheader("Head detectors")
st.caption("Mean attention on 8 sequences of 50 random tokens repeated twice: induction (to the token after the "
           "earlier copy), previous-token and duplicate-token. Click a cell to open that head above.")
scores = cached_head_scores(name, ek)
st.plotly_chart(cached_scores_figure(name, ek), width="stretch", key="detectors", on_select="rerun",
                selection_mode="points")
st.write("Top induction heads: " + ", ".join(f"{h['name']} ({h['score']:.2f})" for h in scores.top("induction", 5)))
