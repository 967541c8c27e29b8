"""Interp explorer: attention maps and head detectors on one hooked model.

Run with ``interp app`` (or the README's main command); it listens on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _shared when run by path

from _shared import DEFAULT_PROMPT, cached_head_scores, pick_model, show_error  # noqa: E402

from interp import InterpError, attention_patterns  # noqa: E402
from interp.figures import attention_figure, head_scores_figure  # noqa: E402

st.set_page_config(page_title="Interp explorer", layout="wide")
st.title("Attention and heads")
name, model = pick_model()
cfg = model.cfg
st.caption(f"{name}: {cfg.n_layers} layers, {cfg.n_heads} query heads"
           f"{f' over {cfg.n_key_value_heads} KV heads' if getattr(cfg, 'n_key_value_heads', None) else ''}"
           f", d_model {cfg.d_model}")

prompt = st.text_area("Prompt", DEFAULT_PROMPT, height=80)
col_layer, col_head = st.columns(2)
layer = col_layer.number_input("Layer", 0, cfg.n_layers - 1, min(18, cfg.n_layers - 1), key="layer")
head = col_head.number_input("Head", 0, cfg.n_heads - 1, min(6, cfg.n_heads - 1), key="head")

try:
    result = attention_patterns(model, prompt, layer=int(layer))
except InterpError as err:
    show_error(err)

st.subheader("Tokens")
st.markdown(" ".join(f"`{i}:{t!r}`" for i, t in enumerate(result.tokens)))

st.subheader(f"Attention pattern L{int(layer)}H{int(head)}")
st.plotly_chart(attention_figure(result, int(layer), int(head)), width="stretch")

st.subheader("Head detectors")
st.caption("Mean attention on 8 sequences of 50 random tokens repeated twice: induction "
           "(to the token after the earlier copy) and previous-token.")
scores = cached_head_scores(name)
st.plotly_chart(head_scores_figure(scores, ["induction", "previous"]), width="stretch")
top = scores.top("induction", 5)
st.write("Top induction heads: " + ", ".join(f"{h['name']} ({h['score']:.2f})" for h in top))
