"""Which components carry the answer, read directly: the logit lens across layers and direct logit
attribution of the answer against a wrong token, per head and MLP."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (cached_dla, cached_model, edits_key, head_from_selection, pick_model,  # noqa: E402
                     prompt_input, serialised, shared, show_error)

from interp import InterpError, logit_lens  # noqa: E402


@st.cache_data(show_spinner="Logit lens…", max_entries=32)
@serialised
def cached_lens(name: str, prompt: str, answer: str, edited: str):
    return logit_lens(cached_model(name), prompt, answer or None)


st.set_page_config(page_title="Lens", layout="wide")
st.title("Logit lens and direct logit attribution")
name, model = pick_model()
clicked = head_from_selection(st.session_state.get("dla"))
if clicked is not None and st.session_state.get("dla_applied") != clicked:  # a head cell opens that head, once
    st.session_state["dla_applied"] = clicked
    st.switch_page("pages/4_Head.py", query_params={"node": "head", "layer": clicked[0], "head": clicked[1]})
if clicked is None:
    st.session_state["dla_applied"] = None
prompt = prompt_input(area=True)
ek = edits_key(model)
url_answer = st.query_params.get("answer")
shared_link = url_answer is not None and url_answer != st.session_state.get("url_answer")
if st.session_state.get("lens_prompt") != prompt and not shared_link:
    try:  # a new prompt: the answer is what the model itself predicts, the wrong one its runner-up
        top = cached_lens(name, prompt, "", ek).top_tokens[-1]
        for key, (tok, _) in zip(("answer", "wrong"), top[:2]):
            st.session_state["w_" + key] = st.session_state["keep_" + key] = tok
    except InterpError as err:
        show_error(err)
st.session_state["lens_prompt"] = prompt
col_a, col_b = st.columns(2)
answer = shared(col_a.text_input, "Answer (one token, mind the leading space; a new prompt starts from the "
                "model's own top prediction)", "answer", " Paris")
wrong = shared(col_b.text_input, "Wrong answer", "wrong", " Rome")

try:
    st.plotly_chart(cached_lens(name, prompt, answer, ek).figure(), width="stretch", key="lens")
    if answer and wrong:
        dla = cached_dla(name, prompt, answer, wrong, ek)
        st.plotly_chart(dla.figure(), width="stretch", key="dla", on_select="rerun", selection_mode="points")
        top = dla.heads.flatten().abs().topk(min(5, dla.heads.numel())).indices.tolist()
        n_heads = dla.heads.shape[1]
        st.caption(f"The parts sum to {dla.total:.4f}; the model's logit difference is {dla.logit_diff:.4f}. "
                   "Largest heads: " + ", ".join(f"L{i // n_heads}H{i % n_heads} ({float(dla.heads.flatten()[i]):+.2f})"
                                                 for i in top) + ". Click a head to open its page.")
except InterpError as err:
    show_error(err)
