"""Logit lens and direct logit attribution of one prompt."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import DEFAULT_PROMPT, pick_model, show_error  # noqa: E402

from interp import InterpError, direct_logit_attribution, logit_lens  # noqa: E402
from interp.figures import dla_figure, lens_figure  # noqa: E402

st.set_page_config(page_title="Logit lens", layout="wide")
st.title("Logit lens and direct logit attribution")
name, model = pick_model()
prompt = st.text_area("Prompt", DEFAULT_PROMPT, height=80)
col_a, col_b = st.columns(2)
answer = col_a.text_input("Answer (one token, mind the leading space)", " Paris")
wrong = col_b.text_input("Wrong answer", " Rome")

try:
    lens = logit_lens(model, prompt, answer or None)
    st.plotly_chart(lens_figure(lens), width="stretch")
    if answer and wrong:
        dla = direct_logit_attribution(model, prompt, answer, wrong)
        st.plotly_chart(dla_figure(dla), width="stretch")
        st.caption(f"The parts sum to {dla.total:.4f}; the model's logit difference is "
                   f"{dla.logit_diff:.4f}.")
except InterpError as err:
    show_error(err)
