"""The attribution graph's view: positions across, layers up, the nodes that share a cell spread out,
links drawn by weight. Reads circuit-tracer's graph JSON (:mod:`interp.circuits.graph_json`)."""

from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["GRAPH_COLOURS", "graph_figure", "graph_layout", "node_weight", "readable_id"]


def node_weight(n: dict) -> float:
    """How much a node matters, for sizes and order: its ``raw_influence`` (our files), else one minus
    circuit-tracer's cumulative share (its files: the most influential node has the smallest share), else
    a logit's probability."""
    if n.get("raw_influence") is not None:
        return abs(n["raw_influence"])
    if n.get("influence") is not None:
        return 1.0 - n["influence"]
    return n.get("token_prob") or 0.0


GRAPH_COLOURS = {"cross layer transcoder": "#4c78a8", "mlp reconstruction error": "#bab0ac", "embedding": "#54a24b",
                 "logit": "#e45756", "supernode": "#9467bd"}
UNTRUSTED_COLOUR = "#f58518"
"""The outline of a node marked not to be trusted (interp.circuits.graph_trust)."""
PER_ROW = 6
"""Nodes side by side in one (layer, position) cell before they wrap to another row."""
LINK_BINS = (0.0, 0.1, 0.3, 0.6)
"""|weight| / the largest shown, where a link's width and opacity step up."""
LINK_STYLE = ((0.6, 0.18), (1.2, 0.32), (2.2, 0.5), (3.6, 0.75))
"""(width px, opacity) for each bin."""


def graph_layout(doc: dict) -> dict[str, tuple[float, float]]:
    """(x, y) of each node of a graph JSON: x its position, y its layer (tokens below layer 0, logits above
    the last). Nodes sharing a cell sit in rows of up to :data:`PER_ROW`, the most influential first and
    nearest the cell's centre line, so that each can be seen and clicked."""
    groups: dict[tuple[int, float], list[dict]] = {}
    for n in doc["nodes"]:
        y = -1.0 if n["layer"] == "E" else float(n["layer"])
        groups.setdefault((n["ctx_idx"], y), []).append(n)
    pos = {}
    for (x, y), members in groups.items():
        members.sort(key=lambda n: -node_weight(n))
        rows = (len(members) + PER_ROW - 1) // PER_ROW
        dy = min(0.8 / rows, 0.3)
        for i, n in enumerate(members):
            r, c = divmod(i, PER_ROW)
            in_row = min(PER_ROW, len(members) - r * PER_ROW)
            pos[n["node_id"]] = (x + (c - (in_row - 1) / 2) * 0.8 / PER_ROW, y + (r - (rows - 1) / 2) * dy)
    return pos


def readable_id(node: dict, tokens: list[str]) -> str:
    """``L12 #345 @6 ' Paris'`` for a feature, ``error L12 @6``, ``token @6 ' Paris'``, ``logit ' Rome'``
    (tokens quoted, so that a leading space shows)."""
    kind, pos = node["feature_type"], node["ctx_idx"]
    tok = repr(tokens[pos]) if 0 <= pos < len(tokens) else ""
    if kind == "cross layer transcoder":
        layer, feat, _ = node["node_id"].split("_")
        return f"L{layer} #{feat} @{pos} {tok}"
    if kind == "mlp reconstruction error":
        return f"error L{node['layer']} @{pos}"
    if kind == "embedding":
        return f"token @{pos} {tok}"
    if kind == "logit":
        text = node.get("clerp", "")
        return "logit " + (repr(text.split('"')[1]) if text.count('"') >= 2 else node["node_id"])
    return f"{node.get('clerp') or node['node_id']} ({len(node.get('members', []))} nodes)"


def _short(n: dict, tokens: list[str]) -> str:
    """A node's text label on the chart: a logit's token, a feature's label (or L#f), a supernode's name."""
    if n["feature_type"] == "logit":
        return readable_id(n, tokens).removeprefix("logit ")
    text = n.get("clerp") or readable_id(n, tokens).split(" @")[0]
    return text if len(text) <= 24 else text[:23] + "…"


def graph_figure(doc: dict, pinned: list[str] | None = None, max_links: int = 600, clicked: str | None = None,
                 hover: dict[str, str] | None = None, labels: int = 12) -> go.Figure:
    """An attribution graph (circuit-tracer's JSON): positions across, layers up; nodes sized by influence and
    coloured by kind, the ``labels`` most influential features and the five likeliest logits named on the
    chart (neighbours in a row above and below in turn). The
    ``max_links`` strongest links are drawn, width and opacity stepping with |weight| (blue positive, red
    negative), and the figure says how many of all it draws; a ``clicked`` node's own links are drawn
    over the rest, which fade. ``hover`` adds text (e.g. top activations) to a node's hover. Each node's
    ``customdata`` is its node_id (for clicks); ``pinned`` nodes are ringed. Links take no hover, so a
    click always lands on a node."""
    pos = graph_layout(doc)
    pinned, hover = set(pinned or []), hover or {}
    toks = doc["metadata"].get("prompt_tokens", [])
    fig = go.Figure()
    ranked = sorted(doc["links"], key=lambda lk: -abs(lk["weight"]))
    links = ranked[:max_links]
    own = [lk for lk in ranked if clicked in (lk["source"], lk["target"])] if clicked else []
    top = max((abs(lk["weight"]) for lk in links), default=1.0) or 1.0
    fade = 0.25 if own else 1.0
    for drawn, boost in ((links, fade), (own, 1.0)):
        for sign, rgb in ((1, "76,120,168"), (-1, "228,87,86")):
            for b, (lo, (width, alpha)) in enumerate(zip(LINK_BINS, LINK_STYLE)):
                hi = LINK_BINS[b + 1] if b + 1 < len(LINK_BINS) else float("inf")
                xs, ys = [], []
                for lk in drawn:
                    if (lk["weight"] >= 0) == (sign > 0) and lo <= abs(lk["weight"]) / top < hi:
                        (x0, y0), (x1, y1) = pos[lk["source"]], pos[lk["target"]]
                        xs += [x0, x1, None]
                        ys += [y0, y1, None]
                if xs:
                    fig.add_trace(go.Scatter(
                        x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                        line={"color": f"rgba({rgb},{alpha * boost:.3f})", "width": width * (1.6 if drawn is own else 1)}))
    feats = sorted((n for n in doc["nodes"] if n["feature_type"] in ("cross layer transcoder", "supernode")),
                   key=lambda n: -node_weight(n))
    logits = sorted((n for n in doc["nodes"] if n["feature_type"] == "logit"), key=lambda n: -n["token_prob"])
    named = {n["node_id"] for n in feats[:labels]} | {n["node_id"] for n in logits[:5]}
    named |= pinned | ({clicked} if clicked else set())
    side: dict[str, str] = {}  # named neighbours in one row label above and below in turn
    for row in {round(pos[i][1], 3) for i in named if i in pos}:
        for k, i in enumerate(sorted((i for i in named if i in pos and round(pos[i][1], 3) == row),
                                     key=lambda i: pos[i][0])):
            side[i] = "top center" if k % 2 == 0 else "bottom center"
    for kind, colour in GRAPH_COLOURS.items():
        nodes = [n for n in doc["nodes"] if n["feature_type"] == kind]
        if not nodes:
            continue
        infl = [node_weight(n) for n in nodes]
        big = max(infl) or 1.0
        fig.add_trace(go.Scatter(
            x=[pos[n["node_id"]][0] for n in nodes], y=[pos[n["node_id"]][1] for n in nodes], mode="markers+text",
            marker={"size": [6 + 10 * (v / big) ** 0.5 if kind != "logit" else 7 + 12 * n["token_prob"]
                             for v, n in zip(infl, nodes)], "color": colour,
                    "line": {"width": [3 if n["node_id"] in pinned or n["node_id"] == clicked else
                                       2.5 if n.get("untrusted") else 0.5 for n in nodes],
                             "color": ["black" if n["node_id"] in pinned or n["node_id"] == clicked or
                                       not n.get("untrusted") else UNTRUSTED_COLOUR for n in nodes]}},
            text=[_short(n, toks) if n["node_id"] in named else "" for n in nodes],
            textposition=[side.get(n["node_id"], "top center") for n in nodes],
            textfont={"size": 10}, customdata=[n["node_id"] for n in nodes], name=kind,
            hovertext=[f"<b>{readable_id(n, toks)}</b>  ({n['node_id']})<br>{n['clerp'] or kind}"
                       f"<br>influence {node_weight(n):.3f}"
                       + (f"<br>activation {n['activation']:.3f}" if n.get("activation") is not None else "")
                       + (f"<br>{hover[n['node_id']]}" if n["node_id"] in hover else "")
                       + (f"<br><b>not to be trusted</b>: {n['untrusted']}" if n.get("untrusted") else "")
                       for n in nodes], hoverinfo="text"))
    n_layers = max((float(n["layer"]) for n in doc["nodes"] if n["layer"] != "E"), default=0)
    fig.update_layout(
        title=f"Attribution graph: {doc['metadata'].get('prompt', '')!r}", clickmode="event",
        hovermode="closest",  # a click picks the nearest node, not the first at its position (hovermode x)
        xaxis={"tickmode": "array", "tickvals": list(range(len(toks))),
               "ticktext": [f"{i}: {t!r}" for i, t in enumerate(toks)], "title": "position", "range": [-0.6, len(toks) - 0.4]},
        yaxis={"title": "layer (tokens below, logits above)", "range": [-1.7, n_layers + 0.7], "zeroline": False},
        height=int(max(620, min(1500, 140 + 34 * (n_layers + 2)))), legend={"orientation": "h"},
        annotations=[{"text": f"drawing {len(links):,} of {len(doc['links']):,} links (the strongest by |weight|)"
                              + (f"; {len(own)} links of {clicked} on top" if own else ""),
                      "xref": "paper", "yref": "paper", "x": 0, "y": 1.0, "yanchor": "bottom", "showarrow": False,
                      "font": {"size": 11, "color": "#555"}}])
    return fig
