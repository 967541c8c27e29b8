"""Which features, at which tokens, cause the next token: the attribution graph of a prompt on a
transcoder set, with its thresholds, hover on links, pinned nodes, the clicked feature's dashboard,
and an ablate / steer button that reruns the prompt and shows what changes. A new user with no
transcoders can train a small demo set for every layer as a background job."""

from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _jobs  # noqa: E402
from _demo import (demo_transcoders_name, demo_transcoders_paths, demo_transcoders_plan,  # noqa: E402
                   estimate_transcoders_seconds)
from _shared import demo_offer, pick_model, prompt_input, remembered, serialised, shared, show_error  # noqa: E402

from interp import InterpError  # noqa: E402
from interp.circuits.graph_json import node_ids  # noqa: E402
from interp.circuits.graph_trust import flag_intervention, massive_positions  # noqa: E402
from interp.circuits.graph_view import (SUPERNODE, merge_supernodes, node_links, parse_supernodes,  # noqa: E402
                                       q_params, subgraph, without_kind)
from interp.figures import graph_figure, readable_id  # noqa: E402
from interp.figures.attribution_graph import node_weight  # noqa: E402


@st.cache_resource(show_spinner="Loading the transcoders…", max_entries=4)
def cached_set(path: str):
    from saes.transcoder import load_set

    return load_set(path)


@st.cache_resource(show_spinner="Opening the store…", max_entries=4)
def cached_store(path: str):
    from saes.features.store import FeatureStore

    return FeatureStore(path)


@st.cache_resource(show_spinner="Computing the attribution graph (batched backward passes)…", max_entries=16)
@serialised
def cached_graph(name: str, tc_path: str, store_path: str, prompt: str, target: str, max_nodes: int):
    """One graph per input: a rerun of the page (a slider, a click) never recomputes it."""
    from _shared import cached_model

    from interp.circuits.graph import attribution_graph

    model = cached_model(name)
    tset = cached_set(tc_path)
    tset.check_model(model)
    graph = attribution_graph(model, tset, prompt, target=target or None, max_feature_nodes=max_nodes)
    if store_path:
        shown = graph.prune(0.95, 0.99).node_mask[:graph.n_features]  # what the sliders' usual range shows
        graph.labels = cached_store(store_path).set_labels(tset, graph.features.tolist(), graph.labels,
                                                           shown.nonzero()[:, 0].tolist())
    return graph


@st.cache_data(show_spinner="Timing this machine for the estimate…", max_entries=4, ttl=60)
@serialised
def cached_estimate(name: str) -> tuple[float, float]:
    from _shared import cached_model

    model = cached_model(name)
    return estimate_transcoders_seconds(model, demo_transcoders_plan(name, model)[1])


@st.cache_data(show_spinner="Reading the features' top activations for the hover…", max_entries=16)
def cached_hover(tc_path: str, store_path: str, feature_nodes: tuple[str, ...], most: int = 150) -> dict[str, str]:
    """Each feature node's top activations from the store (the first ``most`` nodes), for its hover; a
    feature that is a node at several positions is read once."""
    tset, store = cached_set(tc_path), cached_store(store_path)
    by_hook = {s["hook"]: s for s in store.manifest["saes"]}
    text: dict[tuple[int, int], str] = {}
    out = {}
    for nid in feature_nodes[:most]:
        layer, feat, _ = (int(v) for v in nid.split("_"))
        entry = by_hook.get(tset.input_hook(layer))
        if entry is not None and entry["d_sae"] == tset[layer].cfg.d_sae:
            if (layer, feat) not in text:
                text[layer, feat] = "top activations:<br>" + "<br>".join(
                    html.escape(t) for t in store.snippets(feat, 3, entry["name"]))
            out[nid] = text[layer, feat]
    return out


def named_links(graph, ids: list[str], pairs: list[tuple[str, float]]) -> list[dict]:
    """Ranked links as table rows: each other end's readable name and id, and the weight."""
    from interp.circuits.graph_json import ct_node

    row = {i: r for r, i in enumerate(ids)}
    return [{"node": readable_id(ct_node(graph.node(row[i]), graph, 0.0), graph.token_text), "id": i,
             "weight": round(w, 4)} for i, w in pairs]


def set_pinned(ids: list[str]) -> None:
    """The pin box's new value, set from a button's callback (before the box is drawn again)."""
    value = ",".join(ids)
    st.session_state["w_pinned"] = st.session_state["keep_pinned"] = value
    st.query_params["pinned"] = value


def demo_panel(name: str, model) -> None:
    """A new user has no transcoders yet: offer the demo job, or show it running."""
    steps, plan = demo_transcoders_plan(name, model)
    if _jobs.status(demo_transcoders_name(name)).state == "running":
        seconds, tps = 0.0, 0.0
    else:
        seconds, tps = cached_estimate(name)
    demo_offer(
        demo_transcoders_name(name), steps, "The demo transcoders",
        "No transcoders yet. Give a transcoder set (`interp sae train --transcoder --layers 0-29 --out DIR`; "
        "circuit-tracer's and sparsify's sets load too), or let the workbench train a small demo set now.",
        f"**The demo:** a skip transcoder for each of the {plan['layers']} MLPs (TopK, {plan['d_sae']:,} latents, "
        f"k = 16), all trained from one model pass over {plan['train_tokens']:,} tokens of BBC News, and one "
        f"feature store of them over {plan['store_tokens']:,} tokens for labels and dashboards: **about "
        f"{max(1, round(seconds / 60))} min on this machine** (a forward pass runs at {tps:,.0f} tokens/s here). "
        "It runs in the background, so the other pages stay usable, and it is kept for later visits. A set "
        "trained on millions of tokens leaves far less in the error nodes.",
        "Train demo transcoders", "demo_tc_start", estimate=seconds)


st.set_page_config(page_title="Attribution graph", layout="wide")
st.title("Attribution graph")
name, model = pick_model()
if _jobs.status(demo_transcoders_name(name)).state == "done":
    for key, value in zip(("transcoders", "tc_store"), demo_transcoders_paths(name)):
        if not st.session_state.get("w_" + key) and not st.query_params.get(key):
            st.session_state["w_" + key] = st.session_state["keep_" + key] = str(value)
col_tc, col_store = st.columns(2)
tc_path = shared(col_tc.text_input, "Transcoder set", "transcoders", os.environ.get("INTERP_TRANSCODERS", ""),
                 help="a directory written by `interp sae train --transcoder --layers ...`").strip()
store_path = shared(col_store.text_input, "Feature store of the set (optional)", "tc_store", "",
                    help="`interp sae extract DIR/layer_0 ... DIR/layer_N --out STORE`: labels and dashboards").strip()
if not tc_path:
    demo_panel(name, model)
    st.stop()

prompt = prompt_input()
c1, c2, c3, c4 = st.columns(4)
target = shared(c1.text_input, "Target token (optional)", "target", "", help="the logit to explain: it alone then weighs in "
                "choosing, pruning and scoring the nodes").strip()
node_t = shared(c2.slider, "Node threshold", "node_t", 0.8, min_value=0.05, max_value=1.0, step=0.05)
edge_t = shared(c3.slider, "Edge threshold", "edge_t", 0.98, min_value=0.05, max_value=1.0, step=0.01)
max_nodes = int(shared(c4.number_input, "Max feature nodes", "max_nodes", 4096, min_value=16, max_value=100_000))
with st.expander("Pinned nodes and supernodes", expanded=bool(remembered("pinned") or remembered("supernodes"))):
    pinned_raw = shared(st.text_input, "Pinned nodes (comma-separated node ids; click a node and pin it)", "pinned", "")
    super_raw = shared(st.text_area, "Supernodes, one per line: `label: id, id, ...` (a supernode's links are the "
                       "sums of its members')", "supernodes", "", height=80)
pinned = [p for p in (s.strip() for s in pinned_raw.split(",")) if p]
try:
    supernodes = parse_supernodes(super_raw)
except InterpError as err:
    st.error(str(err))
    supernodes = []
try:
    graph = cached_graph(name, tc_path, store_path, prompt, target, max_nodes)
    doc = graph.to_json(node_t, edge_t, slug="graph")
except InterpError as err:
    show_error(err)
    st.stop()
ids = node_ids(graph)
s_all, s_pr = graph.scores(), graph.scores(node_t, edge_t)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Replacement score (pruned)", f"{s_pr.replacement:.2f}", f"unpruned {s_all.replacement:.2f}", delta_color="off")
m2.metric("Completeness (pruned)", f"{s_pr.completeness:.2f}", f"unpruned {s_all.completeness:.2f}", delta_color="off")
m3.metric("Nodes shown", f"{len(doc['nodes']):,}", f"of {graph.n_nodes:,}", delta_color="off")
m4.metric("Links after pruning", f"{len(doc['links']):,}", f"of {int((graph.adjacency != 0).sum()):,}", delta_color="off")
massive = massive_positions(graph)
if massive:
    st.warning("**Massive activations**, where the graph's frozen norms may overstate effects (those nodes have an "
               "orange outline): " + "; ".join(
                   f"{p['token']!r}@{p['position']} after layers {p['layers'][0]}-{p['layers'][-1]}, up to "
                   f"{p['max_norm_ratio']:.0f}x the prompt's median norm" for p in massive))
demo = _jobs.status(demo_transcoders_name(name))
if demo.state == "done" and Path(tc_path) == demo_transcoders_paths(name)[0]:
    plan = demo_transcoders_plan(name, model)[1]
    st.caption(f"**The demo set:** {plan['layers']} skip transcoders ({plan['d_sae']:,} latents each) trained on "
               f"{plan['train_tokens']:,} tokens, with a store of {plan['store_tokens']:,} tokens, made in "
               f"{(demo.finished - demo.started) / 60:.1f} min on this machine. This graph's replacement score is "
               f"{s_all.replacement:.2f}: the other {1 - s_all.replacement:.0%} of the influence on the logits "
               "passes through error nodes. A set trained on millions of tokens leaves far less there.")
t1, t2, t3, t4 = st.columns(4)
only_pinned = t1.checkbox("Show only the pinned subgraph", value=False, key="only_pinned", disabled=not pinned,
                          help="the pinned nodes and the logits, with every direct edge among them")
hide_errors = t2.checkbox("Hide error nodes", value=False, key="hide_errors")
max_links = int(t3.number_input("Links to draw", value=600, min_value=50, max_value=20_000, step=50, key="max_links"))
n_labels = int(t4.number_input("Features labelled", value=12, min_value=0, max_value=200, key="n_labels"))
node_id = st.session_state.get("graph_node")
view = doc
try:
    if only_pinned and pinned:
        view = subgraph(graph, doc, ids, pinned)
except InterpError as err:
    st.error(str(err))
if hide_errors:
    view = without_kind(view, "mlp reconstruction error")
if supernodes:
    view = merge_supernodes(view, supernodes)
hover = cached_hover(tc_path, store_path, tuple(n["node_id"] for n in view["nodes"]
                                                  if n["feature_type"] == "cross layer transcoder")) if store_path else {}
drawn = {n["node_id"] for n in view["nodes"]}
chart = st.session_state.setdefault("graph_chart", 0)
with st.container(key="graph"):
    event = st.plotly_chart(graph_figure(view, pinned=pinned, max_links=max_links, labels=n_labels, hover=hover,
                                         clicked=node_id if node_id in drawn else None),
                            key=f"graph_chart_{chart}", on_select="rerun", selection_mode="points",
                            use_container_width=True)
st.caption(f"Drawing {min(max_links, len(view['links'])):,} of {len(view['links']):,} links, the strongest by "
           "|weight|: width and opacity step with it (blue excites, red inhibits). A clicked node's own links are "
           "drawn over the rest. Hover a node for its top activations when a store is given.")
st.download_button("Download the graph JSON (circuit-tracer's format, with the pins and supernodes in qParams)",
                   json.dumps({**doc, "qParams": q_params(pinned, supernodes, node_id or "")}), file_name="graph.json",
                   mime="application/json", key="download")
picked = [p.get("customdata") for p in (event.selection.points if event and event.selection else [])
          if p.get("customdata")]
if picked:  # the click's node; then a fresh chart, since a chart still holding this selection swallows the next click
    st.session_state["graph_node"] = picked[0] if isinstance(picked[0], str) else picked[0][0]
    st.session_state["graph_chart"] = chart + 1
    st.rerun()
node = next((n for n in view["nodes"] if n["node_id"] == node_id), None) or next(
    (n for n in doc["nodes"] if n["node_id"] == node_id), None)
if node is None:
    st.caption("Click a node to see it here: its strongest inputs and outputs, and for a feature its dashboard, "
               "with buttons to pin, ablate or steer it.")
    st.stop()

toks = graph.token_text
st.subheader(f"{readable_id(node, toks)}: {node['clerp'] or node['feature_type']}")
if node.get("untrusted"):
    st.warning(f"Not to be trusted: {node['untrusted']}")
if node_id in pinned:
    st.button("Unpin this node", key="pin", on_click=set_pinned, args=([p for p in pinned if p != node_id],))
else:
    st.button("Pin this node", key="pin", on_click=set_pinned, args=([*pinned, node_id],))
if node["feature_type"] == SUPERNODE:
    st.caption("Members: " + ", ".join(node["members"]))
    st.stop()
ins, outs = node_links(graph, ids, node_id, k=10)
li, lo = st.columns(2)
li.markdown("**Strongest inputs** (direct edges into this node)")
li.dataframe(named_links(graph, ids, ins), hide_index=True, key="inputs")
lo.markdown("**Strongest outputs** (direct edges out of this node)")
lo.dataframe(named_links(graph, ids, outs), hide_index=True, key="outputs")
if node["feature_type"] != "cross layer transcoder":
    st.caption(f"{node['feature_type']} at position {node['ctx_idx']}, influence {node_weight(node):.3f}")
    st.stop()
layer, feat, pos = (int(v) for v in node["node_id"].split("_"))
left, right = st.columns([3, 2])
tset = cached_set(tc_path)
if store_path:
    from saes.features.dashboard import context_html, feature_dashboard

    store = cached_store(store_path)
    entry = next((s for s in store.manifest["saes"] if s["hook"] == tset.input_hook(layer)), None)
    if entry is not None:
        try:
            d = feature_dashboard(store, feat, entry["name"], k=5, per_group=2, window=12)
            left.markdown(f"**Feature dashboard**: fires on {d.fires:,} tokens ({d.frequency:.3%}), max {d.max:.3f}; "
                          f"top logits {', '.join(repr(t) for t, _ in d.top_logits[:6])}")
            left.markdown("**Top activations**")
            for c in d.top[:5]:
                left.html(context_html(c, d.max))
        except InterpError as err:
            left.error(str(err))
    if left.button("Open on the Features page", key="to_features"):
        st.switch_page("pages/7_Features.py", query_params={"sae_dir": str(Path(tc_path) / f"layer_{layer}"),
                                                            "store": store_path, "feature": str(feat)})
else:
    left.caption("Give the set's feature store above for this feature's dashboard (top activations, logits).")
left.caption(f"Activation {node['activation']:.3f} at position {pos}; influence {node_weight(node):.3f}")
value = right.number_input("Steer to value", value=0.0, key="steer_value",
                           help="0 ablates the feature; any other value sets it")
if right.button("Ablate / steer this feature", type="primary", key="intervene"):
    from _shared import cached_model

    from interp.circuits.graph_intervention import intervene

    try:
        iv = intervene(cached_model(name), tset, graph, [(layer, feat, pos, float(value))])
        why = flag_intervention(graph, iv)  # marks the node in the graph, its JSON and the figure
        st.session_state["graph_iv"] = (node_id, float(value), {**iv.to_dict(), "disagreement": why})
    except InterpError as err:
        show_error(err)
if st.session_state.get("graph_iv") and st.session_state["graph_iv"][0] == node_id:
    _, v, iv = st.session_state["graph_iv"]
    right.markdown(f"**Logit change** with {node_id} set to {v:g}: frozen replacement model, the graph's "
                   "prediction, and the real model with attention free")
    right.dataframe([{"token": t, "before": round(b, 3), "frozen": round(f, 3), "predicted": round(p, 3),
                      "real": round(r, 3), "real change": round(r - b, 3)}
                     for t, b, f, p, r in zip(iv["tokens"], iv["before"], iv["frozen_after"], iv["predicted_after"],
                                              iv["real_after"])], hide_index=True)
    moved = max(abs(r - b) for r, b in zip(iv["real_after"], iv["before"]))
    frozen_moved = max(abs(f - b) for f, b in zip(iv["frozen_after"], iv["before"]))
    right.markdown(f"Largest logit change: real model {moved:.4f}, frozen model {frozen_moved:.4f}")
    right.caption("Real model's top tokens after: " + ", ".join(f"{t!r} {p:.3f}" for t, p in iv["real_top"]))
    if iv.get("disagreement"):
        right.warning(f"The graph's prediction fails here: {iv['disagreement']}. The node is marked in the graph.")
