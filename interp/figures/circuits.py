"""Figures of which components carry an answer: attention, head detectors, the logit lens and
DLA, patching, EAP circuits and their faithfulness, and the weight-space views of heads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:  # results are read by their fields; figures never import an analysis at run time
    from interp.circuits.attention import AttentionPatterns, HeadScores
    from interp.circuits.lens import LogitAttribution, LogitLens

__all__ = ["attention_figure", "attention_grid_figure", "circuit_figure", "click_targets", "composition_figure", "copying_figure", "dla_figure", "faithfulness_figure",
           "full_circuit_figure", "head_scores_figure", "lens_figure", "mimetic_figure", "patch_figure"]


def _labels(tokens: list[str]) -> list[str]:
    # Heatmap axes merge equal labels; make every position's label unique and visible.
    return [f"{i}:{t!r}"[:24] for i, t in enumerate(tokens)]


def attention_figure(result: AttentionPatterns, layer: int | None = None,
                     head: int | None = None) -> go.Figure:
    """Heatmap of one head's pattern (query rows, key columns); a dropdown picks any other
    (layer, head) held in ``result``."""
    labels = _labels(result.tokens)
    choices = [(li, hi) for li in range(len(result.layers)) for hi in range(len(result.heads))]
    start = 0
    if layer is not None and head is not None:
        start = choices.index((result.layers.index(layer), result.heads.index(head)))

    def z(i: int):
        li, hi = choices[i]
        return result.pattern[li, hi].numpy()

    def title(i: int) -> str:
        li, hi = choices[i]
        window = result.windows[li] if result.windows else None
        kind = f" (sliding window {window}: each query sees its last {window} keys)" if window else ""
        return f"Attention pattern L{result.layers[li]}H{result.heads[hi]}{kind}"

    fig = go.Figure(go.Heatmap(z=z(start), x=labels, y=labels, zmin=0, zmax=1,
                               colorscale="Blues", colorbar={"title": "attention"},
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    if len(choices) > 1:
        buttons = [{"label": f"L{result.layers[li]}H{result.heads[hi]}"
                             + (" (window)" if result.windows and result.windows[li] else ""), "method": "update",
                    "args": [{"z": [z(i)]}, {"title": {"text": title(i)}}]}
                   for i, (li, hi) in enumerate(choices)]
        fig.update_layout(updatemenus=[{"buttons": buttons, "active": start, "x": 1.0,
                                        "xanchor": "right", "y": 1.15}])
    fig.update_layout(title=title(start), xaxis_title="key", yaxis_title="query",
                      yaxis_autorange="reversed", height=560)
    return fig


def head_scores_figure(result: HeadScores, detectors: list[str] | None = None) -> go.Figure:
    """Layer × head heatmaps of detector scores, side by side."""
    detectors = detectors or list(result.scores)
    fig = make_subplots(rows=1, cols=len(detectors), subplot_titles=[f"{d} score" for d in detectors],
                        horizontal_spacing=0.08)
    for i, name in enumerate(detectors, start=1):
        s = result.scores[name]
        fig.add_trace(go.Heatmap(z=s.numpy(), zmin=0, zmax=1, colorscale="Viridis",
                                 showscale=(i == len(detectors)),
                                 x=[f"H{h}" for h in range(s.shape[1])],
                                 y=[f"L{l}" for l in range(s.shape[0])],
                                 hovertemplate="%{y}%{x}: %{z:.3f}<extra>" + name + "</extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
        click_targets(fig, s.shape[0], s.shape[1], row=1, col=i, values=s, label=name)
    fig.update_layout(title=(f"Head detectors on {result.n_seqs}×{result.seq_len} repeated random tokens "
                             f"(loss {result.loss_first_repeat:.2f} → {result.loss_second_repeat:.2f} nats)"),
                      height=max(360, 18 * result.scores[detectors[0]].shape[0] + 120))
    return fig


def click_targets(fig: go.Figure, n_layers: int, n_heads: int, row: int | None = None, col: int | None = None,
                  x=None, y=None, size: float = 10, values=None, label: str = "") -> None:
    """Near-invisible markers over a layer × head grid, so a click selects a head: each point's
    ``customdata`` is ``[layer, head]`` (plotly selects scatter points, not heatmap cells). ``x``/``y``
    place the markers; by default they sit on the ``H{h}``/``L{l}`` categories of the heatmaps here.
    With ``values`` (``[layer][head]``) the markers carry the hover instead of the heatmap just drawn
    under them, so a click anywhere on a cell lands on its marker."""
    layers = [l for l in range(n_layers) for _ in range(n_heads)]
    heads = [h for _ in range(n_layers) for h in range(n_heads)]
    hover = {"hoverinfo": "skip"}
    if values is not None:
        fig.data[-1].update(hoverinfo="skip", hovertemplate=None)
        hover = {"text": [f"{float(values[l][h]):.3f}" for l, h in zip(layers, heads)],
                 "hovertemplate": "L%{customdata[0]}H%{customdata[1]}: %{text}<extra>" + label + "</extra>"}
    fig.add_trace(go.Scatter(x=x if x is not None else [f"H{h}" for h in heads],
                             y=y if y is not None else [f"L{l}" for l in layers],
                             customdata=[[l, h] for l, h in zip(layers, heads)], mode="markers",
                             marker={"symbol": "square", "size": size, "opacity": 0.01, "color": "white"},
                             showlegend=False, name="heads", **hover), row=row, col=col)


def attention_grid_figure(result: AttentionPatterns, tile: int = 24) -> go.Figure:
    """Every head's pattern as a thumbnail on a layer × head grid (patterns longer than ``tile``
    tokens are average-pooled to ``tile`` × ``tile``); a click on a thumbnail selects its head."""
    import torch

    p = result.pattern
    n_l, n_h, s = p.shape[0], p.shape[1], p.shape[-1]
    if s > tile:
        p = torch.nn.functional.adaptive_avg_pool2d(p.reshape(n_l * n_h, 1, s, s), tile).reshape(n_l, n_h, tile, tile)
        s = tile
    gap = 1
    z = torch.full((n_l * (s + gap), n_h * (s + gap)), float("nan"))
    for li in range(n_l):
        for hi in range(n_h):
            z[li * (s + gap):li * (s + gap) + s, hi * (s + gap):hi * (s + gap) + s] = p[li, hi]
    fig = go.Figure(go.Heatmap(z=z.numpy(), colorscale="Blues", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    centre = (s - 1) / 2
    click_targets(fig, n_l, n_h, x=[hi * (s + gap) + centre for _ in range(n_l) for hi in range(n_h)],
                  y=[li * (s + gap) + centre for li in range(n_l) for _ in range(n_h)], size=14)
    fig.data[-1].update(hovertemplate="L%{customdata[0]}H%{customdata[1]}<extra></extra>", hoverinfo=None)
    fig.update_xaxes(tickvals=[hi * (s + gap) + centre for hi in range(n_h)], showgrid=False, zeroline=False,
                     ticktext=[f"H{result.heads[hi]}" for hi in range(n_h)], side="top")
    fig.update_yaxes(tickvals=[li * (s + gap) + centre for li in range(n_l)], autorange="reversed", showgrid=False,
                     ticktext=[f"L{result.layers[li]}" for li in range(n_l)], zeroline=False, scaleanchor="x")
    fig.update_layout(title=f"Every head's attention on {len(result.tokens)} tokens (click one to zoom)",
                      height=max(360, 30 * n_l + 120), margin={"l": 50, "r": 10, "t": 80, "b": 10},
                      plot_bgcolor="white")
    return fig


def lens_figure(result: LogitLens) -> go.Figure:
    """The answer's probability after each layer, and each layer's top token written above its probability."""
    top = [f"{t[0][0]!r} {t[0][1]:.2f}" for t in result.top_tokens]
    fig = go.Figure()
    if result.answer_prob is not None:
        fig.add_trace(go.Scatter(x=result.layers, y=result.answer_prob, mode="lines+markers",
                                 name=f"P({result.answer!r})", text=top,
                                 hovertemplate="%{x}: %{y:.3f}<br>top %{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=result.layers, y=[t[0][1] for t in result.top_tokens],
                             mode="lines+markers+text", name="top-1 token and its probability", customdata=top,
                             text=[repr(t[0][0]) for t in result.top_tokens], textposition="top center",
                             textfont={"size": 9}, hovertemplate="%{x}: top %{customdata}<extra></extra>"))
    fig.update_layout(title="Logit lens at the last position", xaxis_title="layer",
                      yaxis_title="probability", yaxis_range=[0, 1])
    return fig


def dla_figure(result: LogitAttribution) -> go.Figure:
    """Per-head DLA heatmap and per-MLP bars, in logit-difference units."""
    heads = result.heads.numpy()
    bound = float(abs(heads).max()) or 1.0
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3],
                        subplot_titles=["attention heads", "MLPs"])
    fig.add_trace(go.Heatmap(z=heads, zmid=0, zmin=-bound, zmax=bound, colorscale="RdBu",
                             x=[f"H{h}" for h in range(heads.shape[1])],
                             y=[f"L{l}" for l in range(heads.shape[0])],
                             hovertemplate="%{y}%{x}: %{z:.3f}<extra></extra>"), row=1, col=1)
    click_targets(fig, heads.shape[0], heads.shape[1], row=1, col=1, values=heads, label="DLA")
    mlps = result.mlps.numpy()
    fig.add_trace(go.Bar(x=mlps, y=[f"L{l}" for l in range(len(mlps))], orientation="h", showlegend=False,
                         marker_color=["#2166ac" if v >= 0 else "#b2182b" for v in mlps],  # the heatmap's RdBu
                         hovertemplate="MLP %{y}: %{x:.3f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=(f"Direct logit attribution of {result.answer!r} − {result.wrong!r} "
                             f"(total {result.logit_diff:.2f}; embed {result.embed:.2f}, "
                             f"biases {result.biases:.2f})"),
                      height=max(360, 18 * heads.shape[0] + 120))
    return fig


def patch_figure(result, normalized: bool = True) -> go.Figure:
    """Heatmap of a patching sweep: layer × position (tokens on the x axis), layer·head ×
    position for per-head-by-position sites, or layer × head."""
    values = result.normalized() if normalized else result.values
    z = values.numpy()
    tokens = [f"{i}:{c!r}" if c == k else f"{i}:{c!r}/{k!r}"
              for i, (c, k) in enumerate(zip(result.clean_tokens, result.corrupt_tokens))]
    if result.axes == ("layer", "pos"):
        x, y = tokens, [f"L{l}" for l in range(z.shape[0])]
    elif result.axes == ("layer", "pos", "head"):
        z = z.transpose(0, 2, 1).reshape(-1, z.shape[1])  # (layer, head) rows, pos columns
        x, y = tokens, [f"L{l}H{h}" for l in range(values.shape[0]) for h in range(values.shape[2])]
    else:
        x, y = [f"H{h}" for h in range(z.shape[1])], [f"L{l}" for l in range(z.shape[0])]
    label = "normalised metric" if normalized else result.metric
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, colorscale="RdBu", zmid=0 if not normalized else 0.0,
                               colorbar={"title": label},
                               hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title=(f"{result.method} patching of {result.site} ({result.direction}, {result.metric}); "
               f"clean {result.clean_baseline:.2f}, corrupt {result.corrupt_baseline:.2f}"),
        xaxis_title="position (clean/corrupt token)" if "pos" in result.axes else "head",
        yaxis_title="layer", height=max(380, min(14 * len(y) + 140, 4000)))
    return fig


def circuit_figure(circuit, n_layers: int) -> go.Figure:
    """The circuit as a layered graph: input at the bottom, logits at the top; edge colour
    is the sign of the EAP score, width its size."""
    def layer_of(node: str) -> float:
        if node == "input":
            return -1.0
        if node == "logits":
            return float(n_layers)
        if node.startswith("MLP"):
            return int(node[3:]) + 0.5
        return float(int(node[1:].split("H")[0].split("KV")[0]))

    rows: dict[float, list[str]] = {}
    for node in circuit.nodes:
        rows.setdefault(layer_of(node), []).append(node)
    pos = {}
    widest = max((len(v) for k, v in rows.items() if k % 1 == 0), default=1)
    for y, names in rows.items():
        if y % 1:  # MLPs sit between layers in a column of their own on the left, zigzagging so that a
            for node in names:  # chain of MLPs draws as a visible path, not one vertical line
                pos[node] = (-widest / 2 - 1.5 - 0.9 * (int(y) % 2), y)
            continue
        for i, node in enumerate(sorted(names)):
            pos[node] = (i - (len(names) - 1) / 2, y)
    fig = go.Figure()
    biggest = max((abs(e["score"]) for e in circuit.edges), default=1.0) or 1.0
    for sign, colour in ((1, "rgba(33,102,172,0.55)"), (-1, "rgba(178,24,43,0.55)")):
        for lo, hi, width in ((0.5, 1.01, 4.0), (0.2, 0.5, 2.0), (0.0, 0.2, 0.8)):
            xs, ys = [], []
            for e in circuit.edges:
                rel = abs(e["score"]) / biggest
                if (e["score"] > 0) == (sign > 0) and lo <= rel < hi:
                    (x0, y0), (x1, y1) = pos[e["src"]], pos[e["dst"]]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip",
                                         line={"color": colour, "width": width},
                                         name=f"{'+' if sign > 0 else '−'} score ≥ {lo:.0%} of max"))
    order = {n: i for names in rows.values() for i, n in enumerate(sorted(names, key=lambda m: pos[m][0]))}
    fig.add_trace(go.Scatter(x=[pos[n][0] for n in circuit.nodes], y=[pos[n][1] for n in circuit.nodes],
                             mode="markers+text", text=circuit.nodes, textfont={"size": 10},
                             # neighbours in a row label above and below in turn, so that labels never overlap
                             textposition=["top center" if order[n] % 2 == 0 else "bottom center" for n in circuit.nodes],
                             customdata=circuit.nodes, marker={"size": 11, "color": "black"}, name="nodes",
                             hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=(f"EAP circuit: {len(circuit.edges)} of {circuit.n_edges_total} edges, "
                             f"faithfulness {circuit.faithfulness:.2f}"),
                      yaxis_title="layer", xaxis_visible=False, height=max(500, 40 * (n_layers + 2)))
    return fig


def faithfulness_figure(curve) -> go.Figure:
    """Faithfulness of the EAP circuit against its number of edges."""
    fig = go.Figure(go.Scatter(x=curve.sizes, y=curve.faithfulness, mode="lines+markers", name="faithfulness"))
    for y, name in ((1.0, "clean model"), (0.0, "every edge corrupted")):
        fig.add_hline(y=y, line_dash="dot", annotation_text=name)
    fig.update_xaxes(type="log", title_text=f"edges kept, strongest |EAP score| first (of {curve.n_edges_total:,})")
    fig.update_yaxes(title_text="(m_circuit − m_corrupt) / (m_clean − m_corrupt)")
    fig.update_layout(title="Circuit faithfulness by size", height=400)
    return fig


def composition_figure(result) -> go.Figure:
    """Q-, K- and V-composition of every writer head (rows) with every later reader head (columns)."""
    kinds = list(result.scores)
    fig = make_subplots(1, len(kinds), subplot_titles=[f"{k.upper()}-composition (random ≈ {result.baseline[k][0]:.3f})"
                                                       for k in kinds], horizontal_spacing=0.06)
    for i, k in enumerate(kinds, start=1):
        fig.add_trace(go.Heatmap(z=result.scores[k].numpy(), x=result.heads, y=result.heads, colorscale="Viridis",
                                 showscale=i == len(kinds), colorbar={"title": "score"},
                                 hovertemplate="%{y} → %{x}: %{z:.3f}<extra>" + k + "</extra>"), 1, i)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False, title_text="reader head (layer-major)")
    fig.update_yaxes(title_text="writer head (layer-major)", row=1, col=1)
    fig.update_layout(title="Composition scores ‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)"
                            + (" (norm gains folded)" if result.folded else ""), height=480)
    return fig


def mimetic_figure(result) -> go.Figure:
    """cos(M, I) and the diagonal z-score of QK and OV against depth: each head a dot, each layer's
    summed circuit a line (Trockman & Kolter 2023)."""
    fig = make_subplots(1, 2, subplot_titles=("cos(M, I) = tr M / (√d ‖M‖_F)", "diagonal z-score"))
    n_layers, n_heads = result.head["qk_cos"].shape
    for col, stat in ((1, "cos"), (2, "z")):
        for kind, color in (("qk", "#1f77b4"), ("ov", "#d62728")):
            h = result.head[f"{kind}_{stat}"]
            fig.add_trace(go.Scatter(x=[l for l in range(n_layers) for _ in range(n_heads)], y=h.flatten().tolist(),
                                     mode="markers", marker={"color": color, "size": 4, "opacity": 0.5},
                                     name=f"{kind.upper()} heads", legendgroup=kind, showlegend=col == 1,
                                     text=[f"L{l}H{i}" for l in range(n_layers) for i in range(n_heads)],
                                     hovertemplate="%{text}: %{y:.3f}<extra></extra>"), 1, col)
            fig.add_trace(go.Scatter(x=list(range(n_layers)), y=result.layer[f"{kind}_{stat}"].tolist(),
                                     mode="lines", line={"color": color}, name=f"{kind.upper()} layer (sum of heads)",
                                     legendgroup=kind, showlegend=col == 1), 1, col)
    fig.update_xaxes(title_text="layer")
    offset = "" if result.offset is None else f", QK at relative offset {result.offset}"
    fig.update_layout(title=f"Mimetic statistics against depth{' (norm gains folded)' if result.folded else ''}{offset}",
                      height=440)
    return fig


def copying_figure(scores, title: str = "OV copying score Σλ/Σ|λ| of W_E W_V W_O W_U",
                   signed: bool = True) -> go.Figure:
    """``[layer, head]`` copying scores as a heatmap: ``signed`` scores in [-1, 1] (+1: the head copies the
    tokens it attends to) on a diverging scale, rates in [0, 1] on a sequential one from 0 to their largest."""
    z = scores.numpy()
    scale = ({"colorscale": "RdBu_r", "zmid": 0, "zmin": -1, "zmax": 1} if signed
             else {"colorscale": "Blues", "zmin": 0, "zmax": float(z.max()) or 1.0})
    fig = go.Figure(go.Heatmap(z=z, x=[f"H{h}" for h in range(z.shape[1])], y=[f"L{l}" for l in range(z.shape[0])],
                               colorbar={"title": "copying"}, hovertemplate="%{y}%{x}: %{z:.3f}<extra></extra>",
                               **scale))
    click_targets(fig, z.shape[0], z.shape[1], values=z, label="copying")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=520)
    return fig


def full_circuit_figure(matrix, tokens: list[str], title: str, rows: str, cols: str) -> go.Figure:
    """A head's full QK or OV circuit over a token subset."""
    fig = go.Figure(go.Heatmap(z=matrix.numpy(), x=tokens, y=tokens, colorscale="RdBu_r", zmid=0,
                               hovertemplate=f"{rows} %{{y}}, {cols} %{{x}}: %{{z:.3f}}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text=rows)
    fig.update_xaxes(title_text=cols)
    fig.update_layout(title=title, height=560)
    return fig
