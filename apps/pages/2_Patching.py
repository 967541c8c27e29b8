"""Activation patching of a prompt pair: exact sweep heatmap, or attribution patching."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import pick_model, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from interp.circuits.attribution import attribution_sweep  # noqa: E402
from interp.figures import patch_figure  # noqa: E402
from interp.metrics import make_task  # noqa: E402
from interp.circuits.patching import SITES, patch_sweep  # noqa: E402

st.set_page_config(page_title="Activation patching", layout="wide")
st.title("Activation patching")
name, model = pick_model()
col_c, col_k = st.columns(2)
clean = col_c.text_input("Clean prompt", "The Eiffel Tower is located in the city of")
corrupt = col_k.text_input("Corrupt prompt (same token length)", "The Colosseum is located in the city of")
col_a, col_w, col_s, col_m = st.columns(4)
answer = col_a.text_input("Answer", " Paris")
wrong = col_w.text_input("Wrong answer", " Rome")
site = col_s.selectbox("Site", list(SITES), index=0, key="site")
method = col_m.radio("Method", ["exact", "attribution"], horizontal=True, key="method")

try:
    task = make_task(model, clean, corrupt, answer, wrong)
    with st.spinner("Patching…"):
        if method == "exact":
            result = patch_sweep(model, task, site)
        else:
            result = attribution_sweep(model, task, [site])[site]
    st.plotly_chart(patch_figure(result), width="stretch")
    st.caption(f"{result.values.numel()} cells in {result.seconds:.2f} s; 1 = clean behaviour "
               f"({result.clean_baseline:.3f}), 0 = corrupt ({result.corrupt_baseline:.3f}).")
except InterpError as err:
    show_error(err)
