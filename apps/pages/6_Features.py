"""SAE features: a store's dashboards, search by token, the features of a live text, and steering."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _shared import pick_model, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from saes.dashboard import context_html, feature_dashboard  # noqa: E402
from saes.store import FeatureStore  # noqa: E402


@st.cache_resource(show_spinner="Opening the store…")
def cached_store(path: str) -> FeatureStore:
    return FeatureStore(path)


@st.cache_resource(show_spinner="Loading the SAE…")
def cached_sae(path: str):
    from saes.io import load_sae

    return load_sae(path)


st.set_page_config(page_title="Features", layout="wide")
st.title("SAE features")
name, model = pick_model()
path = st.text_input("Feature store", os.environ.get("INTERP_STORE", ""), key="store",
                     help="a directory written by `interp sae extract SAE_DIR --out STORE`")
if not path.strip():
    st.info("Give a feature store: `interp sae extract SAE_DIR --out STORE` writes one (README, Features).")
    st.stop()
try:
    store = cached_store(path.strip())
except InterpError as err:
    show_error(err)
m = store.manifest
sae_names = list(store.saes)
sae = st.selectbox("SAE", sae_names, key="sae") if len(sae_names) > 1 else sae_names[0]
entry = store.sae(sae)
st.caption(f"{m['model']} · {entry['hook']} · {entry['d_sae']:,} features · {m.get('tokens', 0):,} tokens in "
           f"{m.get('contexts', 0):,} contexts of {m.get('documents', 0):,} documents ({m['corpus']})")

left, right = st.columns([1, 2])
token = left.text_input("Search features by token", "", key="token", help="a token's text, e.g. ' Paris'")
if token:
    try:
        rows = store.search_token(token, 10, sae)
        left.dataframe([{"feature": r["feature"], "mean": round(r["mean_value"], 3), "fires": f"{r['fire_rate']:.0%}"}
                        for r in rows], hide_index=True)
    except InterpError as err:
        left.error(str(err))
feature = int(right.number_input("Feature", 0, entry["d_sae"] - 1, 0, key="feature"))
try:
    d = feature_dashboard(store, feature, sae, k=8, per_group=3, window=14)
except InterpError as err:
    show_error(err)
right.caption(f"Feature {feature} fires on {d.fires:,} tokens ({d.frequency:.4%}); max {d.max:.3f}, mean when "
              f"firing {d.mean:.3f}; nearest by decoder: "
              + ", ".join(f"#{f} ({c:.2f})" for f, c in d.neighbours[:5])
              + "; fire together: " + ", ".join(f"#{r['feature']} ({r['jaccard']:.2f})" for r in d.correlated[:5]))
for ex in d.explanations[:2]:
    det = ex.get("detection_balanced_accuracy")
    right.info(f"“{ex['explanation']}” ({ex['explainer']}" + (f"; detection {det:.2f}" if det is not None else "") + ")")
st.plotly_chart(d.figure(), width="stretch")
st.subheader("Top activations")
st.html("".join(context_html(c, d.max) for c in d.top) or "<p>The feature never fired in this store.</p>")
for lo, hi, members in d.groups:
    with st.expander(f"Interval {lo:.2f} – {hi:.2f}"):
        st.html("".join(context_html(c, d.max) for c in members))

st.subheader("Live: features of a text, and steering")
text = st.text_input("Text", "The new restaurant is located in", key="text")
col_scale, col_new = st.columns(2)
scale = col_scale.slider("Clamp the feature at × its maximum", -4.0, 8.0, 2.0, 0.5, key="scale")
new_tokens = int(col_new.number_input("New tokens", 1, 60, 20, key="new_tokens"))
if st.button("Run", type="primary", key="run"):
    try:
        from saes.extract import encode_text
        from saes.io import resolve_hook
        from saes.steer import steer_feature

        sae_model = cached_sae(entry["dir"])
        resolve_hook(model, sae_model)
        sae_model = sae_model.to(model.cfg.device)
        tokens, f, _ = encode_text(model, sae_model, text)
        top = f.topk(3, dim=-1)
        st.dataframe([{"token": t, f"#{feature}": round(float(f[i, feature]), 3),
                       "top features": ", ".join(f"#{j} {v:.2f}" for v, j in zip(top.values[i].tolist(),
                                                                             top.indices[i].tolist()) if v > 0)}
                      for i, t in enumerate(tokens)], hide_index=True)
        res = steer_feature(model, sae_model, feature, scale, [text], d.max, max_new_tokens=new_tokens)
        st.markdown(f"**Without steering:** {text}*{res.before[0]}*")
        st.markdown(f"**Feature {feature} clamped at {res.value:.2f}:** {text}*{res.after[0]}*")
    except InterpError as err:
        show_error(err)
