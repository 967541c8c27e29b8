"""Where a fact lives and what editing it does: a ROME causal trace of the prompt, a button that
sends the fact (and the trace's peak MLP layer) to the editor, and a ROME edit with completions,
CounterFact-style scores before and after, and undo. Every page shows that the model is edited."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (cached_model, edits_key, on_model, pick_model, prompt_input, serialised, shared,  # noqa: E402
                     show_error, with_progress)

from interp import InterpError  # noqa: E402
from interp.knowledge.counterfact import edit_report, load_requests  # noqa: E402
from interp.knowledge.rome import RomeConfig, edits  # noqa: E402
from interp.knowledge.tracing import trace  # noqa: E402


@st.cache_data(show_spinner="Tracing every (token, layer) cell…", max_entries=16)
@serialised
@with_progress("Causal tracing")
def cached_trace(name: str, prompt: str, subject: str, kinds: tuple[str, ...], samples: int, edited: str):
    return trace(cached_model(name), prompt, subject, kinds=list(kinds), samples=samples)


def send_to_editor(prompt: str, subject: str, layer: int) -> None:
    """Fill the editor's inputs from the traced fact (a button callback: runs before the widgets)."""
    for key, value in (("template", prompt.replace(subject, "{}", 1)), ("subject", subject), ("edit_layer", layer)):
        st.session_state["w_" + key] = value


def fill_from_request(requests) -> None:
    r = next(r for r in requests if r.id == st.session_state["w_request"])
    for key, value in (("template", r.prompt), ("subject", r.subject), ("target", r.target_new),
                       ("paraphrases", "\n".join(r.paraphrase_prompts)),
                       ("neighbours", "\n".join(r.neighborhood_prompts))):
        st.session_state["w_" + key] = value


st.set_page_config(page_title="Trace and edit", layout="wide")
st.title("Causal tracing and ROME editing")
name, model = pick_model()
cfg = model.cfg

st.header("Trace")
prompt = prompt_input()
col_s, col_k, col_n = st.columns(3)
subject = shared(col_s.text_input, "Subject (as it appears in the prompt)", "trace_subject", "The Eiffel Tower")
kinds = col_k.multiselect("States to restore", ["hidden", "mlp", "attn"], default=["hidden", "mlp", "attn"],
                          key="kinds")
samples = int(shared(col_n.number_input, "Noise samples", "samples", 10, min_value=1, max_value=50))
request = (name, prompt, subject, tuple(kinds or ["hidden"]), samples)
if st.button("Trace", type="primary", key="run"):
    st.session_state["traced"] = request
if st.session_state.get("traced") == request:  # drawn again on later reruns, from the cache
    try:
        result = cached_trace(*request, edits_key(model))
    except InterpError as err:
        show_error(err)
    st.plotly_chart(result.figure(), width="stretch", key="trace")
    peak, where = -1, ""
    if "mlp" in result.scores:  # the strongest restored MLP state among the subject's tokens
        a, b = result.subject_range
        flat = int(result.scores["mlp"][a:b].argmax())
        row, peak = divmod(flat, result.scores["mlp"].shape[1])
        where = f" The MLP effect on the subject peaks at layer {peak} (token {a + row}, {result.tokens[a + row]!r})."
    st.caption(f"P({result.answer!r}): clean {result.clean_prob:.3f}, subject corrupted {result.corrupt_prob:.3f}; "
               f"{result.seconds:.1f} s." + where)
    st.button("Send this fact to the editor", key="send", on_click=send_to_editor, args=(prompt, subject, peak))

st.header("Edit")
requests = load_requests()
st.selectbox("Start from a shipped CounterFact request (optional)", [r.id for r in requests], index=None,
             key="w_request", format_func=lambda i: next(f"{r.subject} → {r.target_new!r}" for r in requests
                                                         if r.id == i),
             on_change=fill_from_request, args=(requests,))
template = shared(st.text_input, "Prompt template ({} is the subject)", "template", "{} is located in the city of")
col_s, col_t, col_l = st.columns(3)
subject_e = shared(col_s.text_input, "Subject", "subject", "The Eiffel Tower")
target = shared(col_t.text_input, "New object (mind the leading space)", "target", " Rome")
layer = int(shared(col_l.number_input, "Layer (-1: ROME's default)", "edit_layer", -1, min_value=-1,
                   max_value=cfg.n_layers - 1))
col_p, col_nb = st.columns(2)
paraphrases = shared(col_p.text_area, "Paraphrases (one per line: should now give the new object)", "paraphrases",
                     "Where is the Eiffel Tower? It is in the city of")
neighbours = shared(col_nb.text_area, "Neighbourhood prompts (other subjects: should keep their answer)",
                    "neighbours", "The Louvre is located in the city of")
cov_tokens = st.sidebar.number_input("Corpus tokens for C", 1024, 1_000_000, 100_000, step=10_000, key="cov")

if st.button("Edit", type="primary", key="edit"):
    try:
        with st.spinner("Key statistics (cached after the first time), k*, v*, the rank-one update…"), on_model():
            st.session_state["report"] = edit_report(
                model, template, subject_e, target, None if layer < 0 else layer,
                RomeConfig(cov_tokens=int(cov_tokens)),
                paraphrases=paraphrases.splitlines(), neighbours=neighbours.splitlines())
    except InterpError as err:
        show_error(err)
    st.rerun()  # draw the whole page, sidebar included, with the edited model

report = st.session_state.get("report")
carried = edits(model)
if report is not None and any(x is report.edit for x in carried):
    e = report.edit
    st.caption(f"Edited layer {e.layer} in {e.stats['seconds']:.1f} s ({e.stats['steps']} Adam steps, target NLL "
               f"{e.stats['target_nll']:.3f}); the previous answer was {report.previous_answer!r}.")
    st.table({"prompt": report.completion_prompts, "before": report.completions["before"],
              "after": report.completions["after"]})
    names = {"ES": "efficacy success", "EM": "efficacy margin", "PS": "paraphrase success",
             "PM": "paraphrase margin", "NS": "neighbourhood success", "NM": "neighbourhood margin"}
    st.dataframe([{"metric": names[k], "before": round(report.metrics["before"][k], 3),
                   "after": round(report.metrics["after"][k], 3)} for k in report.metrics["after"]], hide_index=True)
    st.plotly_chart(report.figure(), width="stretch", key="edit_figure")
if carried:
    st.warning("This model carries edits (every page sees them): "
               + "; ".join(f"L{e.layer}: {e.subject} → {e.target!r}" for e in carried))
    if st.button("Undo the last edit", key="undo"):
        with on_model():
            carried[-1].undo()
        st.rerun()
