"""What one component reads and writes. A head: its attention on the prompt, its direct effect on the
answer, and its OV and QK circuits (what it copies, what it promotes). An MLP: its direct effect and,
when an SAE for its layer is loaded on the Features page, the features active on the prompt.
Circuit graph nodes and DLA cells click through to here."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import (cached_copying, cached_dla, cached_head_weights, cached_model, cached_sae,  # noqa: E402
                     edits_key, on_model, pick_model, prompt_input, remembered, serialised, shared, show_error,
                     token_attention_html)

from interp import InterpError, attention_patterns  # noqa: E402
from interp.circuits.weights import full_circuit, ov_promotes  # noqa: E402
from interp.figures import attention_figure, full_circuit_figure  # noqa: E402
from interp.tokens import display_token, to_tokens  # noqa: E402


@st.cache_data(show_spinner="Attention of the head…", max_entries=64)
@serialised
def cached_head_pattern(name: str, prompt: str, layer: int, head: int, edited: str):
    return attention_patterns(cached_model(name), prompt, layer=layer, head=head)


st.set_page_config(page_title="Head", layout="wide")
name, model = pick_model()
cfg = model.cfg
col_kind, col_layer, col_head = st.columns(3)
kind = shared(col_kind.radio, "Component", "node", "head", options=["head", "mlp"], horizontal=True)
layer = int(shared(col_layer.number_input, "Layer", "layer", min(18, cfg.n_layers - 1), min_value=0,
                   max_value=cfg.n_layers - 1))
head = int(shared(col_head.number_input, "Head", "head", min(6, cfg.n_heads - 1), min_value=0,
                  max_value=cfg.n_heads - 1, disabled=kind == "mlp"))
st.title(f"L{layer}H{head}" if kind == "head" else f"MLP{layer}")
prompt = prompt_input()
col_a, col_w = st.columns(2)
answer = shared(col_a.text_input, "Answer", "answer", " Paris")
wrong = shared(col_w.text_input, "Wrong answer", "wrong", " Rome")
ek = edits_key(model)

try:
    dla = cached_dla(name, prompt, answer, wrong, ek) if answer and wrong else None
    if dla is not None:
        part = float(dla.heads[layer, head]) if kind == "head" else float(dla.mlps[layer])
        ranked = sorted([abs(float(v)) for v in dla.heads.flatten()] + [abs(float(v)) for v in dla.mlps], reverse=True)
        st.metric(f"Direct effect on logit({answer!r}) − logit({wrong!r})", f"{part:+.3f}",
                  help=f"of a total {dla.logit_diff:.3f}; rank {ranked.index(abs(part)) + 1} of {len(ranked)} "
                       "heads and MLPs by size")
    if kind == "head":
        pat = cached_head_pattern(name, prompt, layer, head, ek)
        left, right = st.columns(2)
        with left:
            st.plotly_chart(attention_figure(pat, layer, head), width="stretch", key="pattern")
            token_attention_html(pat.tokens, pat.pattern[0, 0])
        hw = cached_head_weights(name, ek)
        copying = cached_copying(name, ek)
        ids = list(dict.fromkeys(to_tokens(model, prompt)[0].tolist()))
        words = [repr(display_token(model.tokenizer, i)) for i in ids]
        with right:
            st.metric("OV copying score Σλ/Σ|λ|", f"{float(copying[layer, head]):+.3f}",
                      help="+1: the head raises the logits of the tokens it attends to (Elhage et al. 2021)")
            values, top = ov_promotes(hw, layer, head, ids, 5)
            st.caption("What the head writes when it attends to each prompt token (top logits of W_E W_V W_O W_U)")
            st.dataframe([{"attended": w, "promotes": ", ".join(f"{display_token(model.tokenizer, int(t))!r} "
                                                                f"{float(v):.1f}" for t, v in zip(tr, vr))}
                          for w, tr, vr in zip(words, top, values)], hide_index=True)
        c1, c2 = st.columns(2)
        c1.plotly_chart(full_circuit_figure(full_circuit(hw, "ov", layer, head, ids).float().cpu(), words,
                                            f"L{layer}H{head} OV over the prompt's tokens", "attended token",
                                            "output logit"), width="stretch", key="ov")
        c2.plotly_chart(full_circuit_figure(full_circuit(hw, "qk", layer, head, ids).float().cpu(), words,
                                            f"L{layer}H{head} QK over the prompt's tokens", "query token",
                                            "key token"), width="stretch", key="qk")
    else:
        sae_dir = remembered("sae_dir", "")
        sae = cached_sae(sae_dir) if sae_dir else None
        if sae is None or f"blocks.{layer}." not in sae.cfg.hook_name:
            st.info(f"Load an SAE for layer {layer} on the Features page to see MLP{layer}'s top features here"
                    + (f" (the one loaded reads {sae.cfg.hook_name})." if sae is not None else "."))
        else:
            from saes.features.extract import encode_text
            from saes.io import resolve_hook

            resolve_hook(model, sae)
            with on_model():
                tokens, f, _ = encode_text(model, sae.to(cfg.device), prompt)
            mean = f.mean(0)
            top = mean.topk(min(10, mean.numel()))
            st.subheader(f"Top features of {sae.cfg.hook_name} on this prompt")
            st.dataframe([{"feature": int(j), "mean activation": round(float(v), 3),
                           "at the last token": round(float(f[-1, j]), 3),
                           "open": f"/Features?feature={int(j)}"} for v, j in zip(top.values, top.indices)],
                         hide_index=True, column_config={"open": st.column_config.LinkColumn(display_text="dashboard")})
except InterpError as err:
    show_error(err)
