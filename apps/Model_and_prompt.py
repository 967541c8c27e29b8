"""Interp explorer, first page: the model and the prompt every other page starts from.

Run with ``interp app`` (or the README's main command); it listens on 127.0.0.1. The pages
follow a question from start to end: which heads attend where (Attention), which components
carry the answer (Lens, Circuits, Head), where a fact lives and what editing it does (Trace and
edit), what is linearly readable and steerable (Probes and steering), which features are active
(Features), and what inputs or weights do (Token search and weights).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _shared when run by path

from _shared import cached_model, edits_key, pick_model, prompt_input, serialised, shared, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from interp.predictions import predict  # noqa: E402


@st.cache_data(show_spinner="Running the prompt…", max_entries=64)
@serialised
def cached_prediction(name: str, prompt: str, k: int, edited: str):
    return predict(cached_model(name), prompt, k)


st.set_page_config(page_title="Interp explorer", layout="wide")
st.title("Model and prompt")
name, model = pick_model()
cfg = model.cfg
kv = getattr(cfg, "n_key_value_heads", None)
st.caption(f"{name}: {cfg.n_layers} layers, {cfg.n_heads} query heads{f' over {kv} KV heads' if kv else ''}, "
           f"d_model {cfg.d_model}, d_vocab {cfg.d_vocab:,}, on {cfg.device}")

prompt = prompt_input(area=True)
k = shared(st.slider, "Top next tokens", "k", 10, min_value=1, max_value=50)
try:
    pred = cached_prediction(name, prompt, int(k), edits_key(model))
except InterpError as err:
    show_error(err)

st.subheader("Tokens")
st.markdown(" ".join(f"`{i}:{t!r}`" for i, t in enumerate(pred.tokens)))
left, right = st.columns([2, 1])
right.subheader("Next token")
right.table({"token": [repr(t) for t in pred.top_tokens], "probability": [f"{p:.4f}" for p in pred.top_probs]})
left.plotly_chart(pred.figure(), width="stretch", key="prediction")
st.caption(f"Mean loss {pred.mean_loss:.3f} nats over {len(pred.tokens) - 1} predicted tokens; "
           f"{pred.seconds * 1000:.0f} ms. This prompt is where the other pages start.")
