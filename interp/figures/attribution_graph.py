"""The attribution graph's view: positions across, layers up, the nodes that share a cell spread out,
links drawn by weight. Reads circuit-tracer's graph JSON (:mod:`interp.circuits.graph_json`)."""

from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["GRAPH_COLOURS", "graph_figure", "graph_layout"]


GRAPH_COLOURS = {"cross layer transcoder": "#4c78a8", "mlp reconstruction error": "#bab0ac", "embedding": "#54a24b",
                 "logit": "#e45756"}


def graph_layout(doc: dict) -> dict[str, tuple[float, float]]:
    """(x, y) of each node of a graph JSON: x its position (nodes sharing a position and layer spread
    across it), y its layer (tokens below layer 0, logits above the last)."""
    groups: dict[tuple[int, float], list[dict]] = {}
    for n in doc["nodes"]:
        y = -1.0 if n["layer"] == "E" else float(n["layer"])
        groups.setdefault((n["ctx_idx"], y), []).append(n)
    pos = {}
    for (x, y), members in groups.items():
        members.sort(key=lambda n: -(n.get("influence") or 0))
        for i, n in enumerate(members):
            pos[n["node_id"]] = (x + (i - (len(members) - 1) / 2) * min(0.8 / max(len(members), 1), 0.15), y)
    return pos


def graph_figure(doc: dict, pinned: list[str] | None = None, max_links: int = 400) -> go.Figure:
    """An attribution graph (circuit-tracer's JSON): positions across, layers up; nodes sized by influence
    and coloured by kind; the strongest links drawn (blue positive, red negative) with hover at their
    middles. Each node's ``customdata`` is its node_id (for clicks). ``pinned`` nodes are ringed."""
    pos = graph_layout(doc)
    pinned = set(pinned or [])
    fig = go.Figure()
    links = sorted(doc["links"], key=lambda lk: -abs(lk["weight"]))[:max_links]
    top = max((abs(lk["weight"]) for lk in links), default=1.0) or 1.0
    for sign, colour in ((1, "rgba(76,120,168,0.45)"), (-1, "rgba(228,87,86,0.45)")):
        xs, ys = [], []
        for lk in links:
            if (lk["weight"] >= 0) == (sign > 0):
                (x0, y0), (x1, y1) = pos[lk["source"]], pos[lk["target"]]
                xs += [x0, x1, None]
                ys += [y0, y1, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": 1}, hoverinfo="skip",
                                 name="positive links" if sign > 0 else "negative links"))
    fig.add_trace(go.Scatter(
        x=[(pos[lk["source"]][0] + pos[lk["target"]][0]) / 2 for lk in links],
        y=[(pos[lk["source"]][1] + pos[lk["target"]][1]) / 2 for lk in links], mode="markers",
        marker={"size": [3 + 6 * abs(lk["weight"]) / top for lk in links], "color": "rgba(0,0,0,0.15)"},
        text=[f"{lk['source']} → {lk['target']}: {lk['weight']:+.3f}" for lk in links], hoverinfo="text",
        name="link weights"))
    for kind, colour in GRAPH_COLOURS.items():
        nodes = [n for n in doc["nodes"] if n["feature_type"] == kind]
        if not nodes:
            continue
        infl = [abs(n.get("influence") or 0) for n in nodes]
        big = max(infl) or 1.0
        fig.add_trace(go.Scatter(
            x=[pos[n["node_id"]][0] for n in nodes], y=[pos[n["node_id"]][1] for n in nodes], mode="markers",
            marker={"size": [8 + 18 * (v / big) ** 0.5 if kind != "logit" else 8 + 18 * n["token_prob"]
                             for v, n in zip(infl, nodes)], "color": colour,
                    "line": {"width": [3 if n["node_id"] in pinned else 0.5 for n in nodes], "color": "black"}},
            customdata=[n["node_id"] for n in nodes], name=kind,
            text=[f"{n['node_id']}<br>{n['clerp'] or kind}<br>influence {n.get('influence') or 0:.3f}"
                  + (f"<br>activation {n['activation']:.3f}" if n.get("activation") is not None else "")
                  for n in nodes], hoverinfo="text"))
    toks = doc["metadata"].get("prompt_tokens", [])
    n_layers = max((int(n["layer"]) for n in doc["nodes"] if n["layer"] != "E"), default=0)
    fig.update_layout(title=f"Attribution graph: {doc['metadata'].get('prompt', '')!r}", clickmode="event",
                      xaxis={"tickmode": "array", "tickvals": list(range(len(toks))),
                             "ticktext": [f"{i}: {t!r}" for i, t in enumerate(toks)], "title": "position"},
                      yaxis={"title": "layer (tokens below, logits above)", "range": [-1.7, n_layers + 0.7]},
                      height=700, legend={"orientation": "h"})
    return fig
