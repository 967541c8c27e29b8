"""ROME: rewrite a fact, compare completions, undo."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import pick_model, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from interp.knowledge.counterfact import edit_report  # noqa: E402
from interp.knowledge.rome import RomeConfig, edits  # noqa: E402

st.set_page_config(page_title="ROME editing", layout="wide")
st.title("ROME editing")
name, model = pick_model()
prompt = st.text_input("Prompt template ({} is the subject)", "{} is located in the city of", key="template")
col_s, col_t, col_l = st.columns(3)
subject = col_s.text_input("Subject", "The Eiffel Tower", key="subject")
target = col_t.text_input("New object (mind the leading space)", " Rome", key="target")
layer = col_l.number_input("Layer (-1: peak MLP causal effect)", -1, model.cfg.n_layers - 1, -1, key="layer")
cov_tokens = st.sidebar.number_input("Corpus tokens for C", 1024, 1_000_000, 100_000, step=10_000, key="cov")

if st.button("Edit", type="primary", key="run"):
    try:
        with st.spinner("Key statistics (cached after the first time), k*, v*, the rank-one update…"):
            report = edit_report(model, prompt, subject, target, None if layer < 0 else int(layer),
                                 RomeConfig(cov_tokens=int(cov_tokens)))
        e = report.edit
        st.caption(f"Edited layer {e.layer} in {e.stats['seconds']:.1f} s "
                   f"({e.stats['steps']} Adam steps, target NLL {e.stats['target_nll']:.3f}).")
        st.table({"prompt": report.completion_prompts, "before": report.completions["before"],
                  "after": report.completions["after"]})
        st.plotly_chart(report.figure(), width="stretch")
    except InterpError as err:
        show_error(err)

carried = edits(model)
if carried:
    st.warning("This model carries edits (every page sees them): "
               + "; ".join(f"L{e.layer}: {e.subject} → {e.target!r}" for e in carried))
    if st.button("Undo the last edit", key="undo"):
        carried[-1].undo()
        st.rerun()
