"""What every explorer page shares: the model picker and cached library calls.

Pages only call library functions and draw their results; nothing here computes.
"""

from __future__ import annotations

import os

import streamlit as st

from interp import InterpError, detect_heads, load_model
from interp.models import BUILTIN, DEFAULT_MODEL

DEFAULT_PROMPT = "The Eiffel Tower is located in the city of"


@st.cache_resource(show_spinner="Loading model…")
def cached_model(name: str):
    return load_model(name)


@st.cache_data(show_spinner="Scoring heads on repeated random tokens…")
def cached_head_scores(name: str, n_seqs: int = 8, seq_len: int = 50):
    return detect_heads(cached_model(name), n_seqs=n_seqs, seq_len=seq_len)


def pick_model():
    """Sidebar model picker; returns (name, model) or stops the page with the error line."""
    start = os.environ.get("INTERP_MODEL", DEFAULT_MODEL)
    options = list(dict.fromkeys([start, *BUILTIN]))
    name = st.sidebar.selectbox("Model", options, index=0, key="model_name")
    try:
        model = cached_model(name)
    except InterpError as err:
        st.error(str(err))
        st.stop()
    from interp.knowledge.rome import edits

    if edits(model):  # an edited model says so on every page
        st.sidebar.warning("Edited by ROME: " + "; ".join(f"{e.subject} → {e.target!r}" for e in edits(model)))
    return name, model


def show_error(err: InterpError) -> None:
    st.error(str(err))
    st.stop()
