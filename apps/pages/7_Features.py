"""Which features are active and what they mean: an SAE and its feature store, search by token or by
running a text, the feature dashboard (contexts with per-token shading, histogram, logit effects,
neighbours, the explanation and its scores), and a feature steering playground."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _jobs  # noqa: E402
from _demo import demo_name, demo_paths, demo_plan, estimate_seconds  # noqa: E402
from _shared import (cached_sae, continuation_html, demo_offer, on_model, pick_model, remembered, serialised,  # noqa: E402
                     shared, show_error)

from interp import InterpError  # noqa: E402
from saes.features.dashboard import context_html, feature_dashboard  # noqa: E402
from saes.features.store import FeatureStore  # noqa: E402


@st.cache_resource(show_spinner="Opening the store…", max_entries=4)
def cached_store(path: str) -> FeatureStore:
    return FeatureStore(path)


@st.cache_data(show_spinner="Reading the feature's dashboard from the store…", max_entries=128)
def cached_dashboard(path: str, feature: int, sae: str):
    return feature_dashboard(cached_store(path), feature, sae, k=8, per_group=3, window=14)


@st.cache_data(show_spinner="Timing a forward pass for the estimate…", max_entries=4, ttl=60)
@serialised
def cached_estimate(name: str) -> tuple[float, float]:
    from _shared import cached_model

    model = cached_model(name)
    return estimate_seconds(model, demo_plan(name, model)[1])


def demo_panel(name: str, model) -> None:
    """A new user has no SAE yet: offer the demo job, or show it running."""
    steps, plan = demo_plan(name, model)
    if _jobs.status(demo_name(name)).state == "running":
        seconds, tps = 0.0, 0.0
    else:
        seconds, tps = cached_estimate(name)
    demo_offer(
        demo_name(name), steps, "The demo SAE and store",
        "No SAE yet. Give an SAE directory (`interp sae train` writes one) for live features and steering, "
        "and its feature store (`interp sae extract SAE_DIR --out STORE`) for dashboards and search "
        "(README, Features), or let the workbench make a small demo of both now.",
        f"**The demo:** a TopK SAE of {plan['d_sae']:,} latents (k = 16) on `{plan['hook']}`, trained on "
        f"{plan['train_tokens']:,} tokens of BBC News, and its feature store over {plan['store_tokens']:,} tokens: "
        f"**about {max(1, round(seconds / 60))} min on this machine** (a forward pass runs at "
        f"{tps:,.0f} tokens/s here). It runs in the background, so the other pages stay usable, and it is kept "
        "under the workbench cache for later visits.\n\n"
        f"A full-size SAE (16 × d_model = {16 * model.cfg.d_model:,} latents, millions of tokens: "
        "`interp sae train --hook ... --tokens 20000000`) has fewer dead latents and more specific, more "
        "interpretable features; the demo shows the pipeline, not the best features this model has.",
        "Train a demo SAE and extract a demo store", "demo_start", estimate=seconds)


st.set_page_config(page_title="Features", layout="wide")
st.title("SAE features")
name, model = pick_model()
if _jobs.status(demo_name(name)).state == "done":  # the demo is ready: it fills empty inputs
    for key, value in zip(("sae_dir", "store"), demo_paths(name)):
        if not st.session_state.get("w_" + key) and not st.query_params.get(key):
            st.session_state["w_" + key] = st.session_state["keep_" + key] = str(value)
col_sae, col_store = st.columns(2)
sae_dir = shared(col_sae.text_input, "SAE directory", "sae_dir", os.environ.get("INTERP_SAE", ""),
                 help="a directory written by `interp sae train` (or SAELens files)").strip()
path = shared(col_store.text_input, "Feature store", "store", os.environ.get("INTERP_STORE", ""),
              help="a directory written by `interp sae extract SAE_DIR --out STORE`").strip()
if not sae_dir and not path:
    demo_panel(name, model)
    st.stop()

sae_model = store = entry = None
try:
    if sae_dir:
        from saes.io import resolve_hook

        sae_model = cached_sae(sae_dir)
        resolve_hook(model, sae_model)  # an SAE trained on another model stops here
        sae_model = sae_model.to(model.cfg.device)
    if path:
        store = cached_store(path)
        sae_names = list(store.saes)
        sae_name = store.match(model.cfg.model_name, sae_dir or None)
        if not sae_dir and len(sae_names) > 1:
            sae_name = st.selectbox("SAE of the store", sae_names, key="sae")
        entry = store.sae(sae_name)
        if sae_model is None:
            sae_model = cached_sae(entry["dir"]).to(model.cfg.device)
except InterpError as err:
    show_error(err)

d_sae = sae_model.cfg.d_sae
if entry is not None:
    m = store.manifest
    st.caption(f"{m['model']} · {entry['hook']} · {entry['d_sae']:,} features · {m.get('tokens', 0):,} tokens in "
               f"{m.get('contexts', 0):,} contexts of {m.get('documents', 0):,} documents ({m['corpus']})")
else:
    st.caption(f"{sae_model.cfg.hook_name} · {d_sae:,} features · no store: live features and steering only")

def open_search_hit() -> int | None:
    """The feature of a newly selected token-search row, once per selection."""
    rows = (st.session_state.get("token_hits") or {}).get("selection", {}).get("rows", [])
    picked = st.session_state.get("token_rows", [])[rows[0]] if rows and rows[0] < len(
        st.session_state.get("token_rows", [])) else None
    if picked == st.session_state.get("token_hit_applied"):
        return None
    st.session_state["token_hit_applied"] = picked
    return picked


@st.fragment
def dashboard_view() -> None:
    """The feature picker, search and dashboard; a new feature reruns only this part of the page."""
    left, right = st.columns([1, 2])
    hit = open_search_hit()
    if hit is not None:  # a clicked search result opens its feature (set before the picker is drawn)
        st.session_state["w_feature"] = st.session_state["keep_feature"] = hit
        st.query_params["feature"] = str(hit)
    feature = int(shared(right.number_input, "Feature", "feature", 0, min_value=0, max_value=d_sae - 1))
    if store is not None:
        token = left.text_input("Search features by token", "", key="token", help="a token's text, e.g. ' Paris'")
        if token:
            try:
                rows = store.search_token(token, 10, entry["name"])
                st.session_state["token_rows"] = [int(r["feature"]) for r in rows]
                left.dataframe([{"feature": r["feature"], "mean": round(r["mean_value"], 3),
                                 "fires": f"{r['fire_rate']:.0%}"} for r in rows], hide_index=True,
                               on_select="rerun", selection_mode="single-row", key="token_hits")
                left.caption("Click a row to open that feature.")
            except InterpError as err:
                left.error(str(err))
        try:
            d = cached_dashboard(path, feature, entry["name"])
        except InterpError as err:
            show_error(err)
        right.caption(f"Feature {feature} fires on {d.fires:,} tokens ({d.frequency:.4%}); max {d.max:.3f}, mean "
                      f"when firing {d.mean:.3f}; nearest by decoder: "
                      + ", ".join(f"#{f} ({c:.2f})" for f, c in d.neighbours[:5]) + "; fire together: "
                      + ", ".join(f"#{r['feature']} ({r['jaccard']:.2f})" for r in d.correlated[:5]))
        for ex in d.explanations[:2]:
            det = ex.get("detection_balanced_accuracy")
            right.info(f"“{ex['explanation']}” ({ex['explainer']}"
                       + (f"; detection {det:.2f}" if det is not None else "") + ")")
        if not d.explanations:
            right.caption("No explanation yet: `interp sae explain STORE` writes them.")
        st.plotly_chart(d.figure(), width="stretch", key="dashboard")
        st.subheader("Top activations")
        st.html("".join(context_html(c, d.max) for c in d.top) or "<p>The feature never fired in this store.</p>")
        for lo, hi, members in d.groups:
            with st.expander(f"Interval {lo:.2f} – {hi:.2f}"):
                st.html("".join(context_html(c, d.max) for c in members))


dashboard_view()
feature = int(remembered("feature", 0))
d = cached_dashboard(path, feature, entry["name"]) if store is not None else None

st.subheader("Live: the features of a text, and steering")
text = shared(st.text_input, "Text", "text", "The new restaurant is located in")
col_scale, col_new = st.columns(2)
scale = col_scale.slider("Clamp the feature at × its maximum", 0.0, 8.0, 2.0, 0.5, key="scale")
new_tokens = int(col_new.number_input("New tokens", 1, 60, 20, key="new_tokens"))
if st.button("Run", type="primary", key="run"):
    try:
        from saes.features.extract import encode_text
        from saes.features.steer import steer_feature

        with on_model():
            tokens, f, _ = encode_text(model, sae_model, text)
        top = f.topk(min(3, d_sae), dim=-1)
        st.dataframe([{"token": t, f"#{feature}": round(float(f[i, feature]), 3),
                       "top features": ", ".join(f"#{j} {v:.2f}" for v, j in zip(top.values[i].tolist(),
                                                                             top.indices[i].tolist()) if v > 0)}
                      for i, t in enumerate(tokens)], hide_index=True)
        peak = d.max if store is not None else float(f[:, feature].max())
        if not peak > 0:
            raise InterpError(f"feature {feature} never fires on this text and no store gives its maximum; "
                              "load its store or pick a feature that fires")
        with on_model():
            res = steer_feature(model, sae_model, feature, scale, [text], peak, max_new_tokens=new_tokens)
        st.html(continuation_html("Without steering", text, res.before[0]))
        st.html(continuation_html(f"Feature {feature} clamped at {res.value:.2f}", text, res.after[0]))
    except InterpError as err:
        show_error(err)
