"""ROME-style causal trace of one fact."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import pick_model, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from interp.figures import trace_figure  # noqa: E402
from interp.knowledge.tracing import trace  # noqa: E402

st.set_page_config(page_title="Causal tracing", layout="wide")
st.title("Causal tracing")
name, model = pick_model()
prompt = st.text_input("Prompt", "The Eiffel Tower is located in the city of")
col_s, col_k, col_n = st.columns(3)
subject = col_s.text_input("Subject (as it appears in the prompt)", "The Eiffel Tower")
kinds = col_k.multiselect("States to restore", ["hidden", "mlp", "attn"], default=["hidden", "mlp", "attn"])
samples = col_n.number_input("Noise samples", 1, 50, 10, key="samples")

if st.button("Trace", type="primary", key="run"):
    try:
        with st.spinner("Tracing every (token, layer) cell…"):
            result = trace(model, prompt, subject, kinds=kinds or ["hidden"], samples=int(samples))
        st.plotly_chart(trace_figure(result), width="stretch")
        st.caption(f"P({result.answer!r}): clean {result.clean_prob:.3f}, subject corrupted "
                   f"{result.corrupt_prob:.3f}; {result.seconds:.1f} s.")
    except InterpError as err:
        show_error(err)
