"""Figures of where facts live and what editing them does: causal traces, ROME edits and their
evaluation, linear relational embeddings and fact-recall circuits."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["average_trace_figure", "edit_eval_figure", "edit_figure", "lre_figure",
           "relation_circuit_figure", "resample_figure", "trace_figure"]


def trace_figure(result) -> go.Figure:
    """One heatmap per kind: P(answer) with each (token, layer) state restored."""
    kinds = list(result.scores)
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"restore {k}" + (f" (window {result.window})" if k != "hidden" else "")
                                        for k in kinds])
    a, b = result.subject_range
    labels = [f"{i}:{t!r}" + ("*" if a <= i < b else "") for i, t in enumerate(result.tokens)]
    for i, k in enumerate(kinds, start=1):
        s = result.scores[k]
        fig.add_trace(go.Heatmap(z=s.numpy(), x=[f"L{l}" for l in range(s.shape[1])], y=labels,
                                 colorscale=["white", ["purple", "green", "red"][(i - 1) % 3]],
                                 zmin=result.corrupt_prob, zmax=max(result.clean_prob, float(s.max())),
                                 showscale=(i == len(kinds)), colorbar={"title": f"P({result.answer!r})"},
                                 hovertemplate="%{y} %{x}: %{z:.3f}<extra>" + k + "</extra>"), row=1, col=i)
        fig.add_hrect(y0=a - 0.5, y1=b - 0.5, line={"color": "black", "width": 1.5}, row=1, col=i)  # the subject
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=(f"Causal trace: P({result.answer!r}) clean {result.clean_prob:.3f}, "
                             f"subject (*) corrupted {result.corrupt_prob:.3f}; {result.samples} noise samples"),
                      height=max(380, 26 * len(labels) + 160))
    return fig


def average_trace_figure(result) -> go.Figure:
    """ROME Figure 2 style: average indirect effect by token role and layer, per kind."""
    kinds = list(result.effects)
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{k}" for k in kinds])
    for i, k in enumerate(kinds, start=1):
        e = result.effects[k]
        fig.add_trace(go.Heatmap(z=e.numpy(), x=[f"L{l}" for l in range(e.shape[1])], y=list(result.roles),
                                 colorscale=["white", ["purple", "green", "red"][(i - 1) % 3]], zmin=0,
                                 showscale=(i == len(kinds)), colorbar={"title": "AIE"},
                                 hovertemplate="%{y} %{x}: %{z:.3f}<extra>" + k + "</extra>"), row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=(f"Average indirect effect over {result.n_facts} facts "
                             f"(clean P {result.mean_clean_prob:.2f}, corrupted {result.mean_corrupt_prob:.2f})"),
                      height=420)
    return fig


def edit_figure(out: dict) -> go.Figure:
    """One ROME edit: P(target) and P(previous answer) before/after, and the v* optimisation's NLL."""
    fig = make_subplots(1, 2, subplot_titles=("Rewrite prompt", "v* optimisation"))
    for name, key in (("new target", "target"), ("previous answer", "previous_answer")):
        fig.add_trace(go.Bar(name=name, x=["before", "after"],
                             y=[out["probs"]["before"][key], out["probs"]["after"][key]]), 1, 1)
    hist = out["edit"]["nll_history"]
    fig.add_trace(go.Scatter(x=list(range(len(hist))), y=hist, mode="lines+markers", name="target NLL"), 1, 2)
    fig.update_yaxes(title_text="probability", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="mean NLL (nats)", row=1, col=2)
    fig.update_xaxes(title_text="Adam step", row=1, col=2)
    fig.update_layout(title=f"ROME edit at layer {out['layer']}: {out['subject']} → {out['target']!r}",
                      barmode="group")
    return fig


def edit_eval_figure(out: dict) -> go.Figure:
    """CounterFact-style scores before and after editing, and each request's efficacy margin."""
    fig = make_subplots(1, 2, subplot_titles=("Success rates (%)", "Per request: P(new) − P(true), rewrite prompt"),
                        column_widths=[0.35, 0.65])
    metrics = ["ES", "PS", "NS", "S"]
    colors = {"pre": "#636efa", "post": "#ef553b"}
    reqs = out["requests"]
    labels = [f"{r['subject']} → {r['target_new'].strip()}" for r in reqs]
    for when in ("pre", "post"):
        fig.add_trace(go.Bar(name=f"{when}-edit", x=metrics, y=[out[when][m] for m in metrics],
                             marker_color=colors[when], legendgroup=when), 1, 1)
        fig.add_trace(go.Bar(name=f"{when}-edit", x=labels, y=[r[when]["EM"] for r in reqs],
                             marker_color=colors[when], legendgroup=when, showlegend=False), 1, 2)
    fig.update_yaxes(range=[0, 100], row=1, col=1)
    fig.update_layout(title=f"ROME on {out['n_requests']} requests ({out['model']})", barmode="group")
    return fig


_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]


def lre_figure(sweeps: list) -> go.Figure:
    """LRE faithfulness and causality against layer, one line per relation (dashed: linguistic,
    dotted: commonsense, solid: factual)."""
    fig = make_subplots(1, 2, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=("Faithfulness (held-out)", "Causality (held-out)"))
    dash = {"factual": "solid", "linguistic": "dash", "commonsense": "dot"}
    for i, sw in enumerate(sweeps):
        style = {"color": _PALETTE[i % len(_PALETTE)], "dash": dash.get(sw.kind, "solid")}
        for col, values in ((1, sw.faithfulness), (2, sw.causality)):
            fig.add_trace(go.Scatter(x=sw.layers, y=values, mode="lines+markers", name=f"{sw.relation} ({sw.kind})",
                                     legendgroup=sw.relation, showlegend=col == 1, line=style,
                                     hovertemplate=f"{sw.relation} L%{{x}}: %{{y:.2f}}<extra></extra>"), 1, col)
    fig.update_yaxes(range=[0, 1.02], title_text="fraction of held-out subjects", row=1, col=1)
    fig.update_xaxes(title_text="layer ℓ of s")
    rank = sweeps[0].rank if sweeps else None
    fig.update_layout(title=f"Linear relational embeddings by layer (n = {sweeps[0].n if sweeps else '?'} "
                            f"examples, causality at rank {rank if rank else 'full'})", height=460)
    return fig


def resample_figure(result) -> go.Figure:
    """Resample ablation averaged over a relation: the share of the logit difference lost, by token
    role and layer, for each site."""
    sites = list(result.effects)
    fig = make_subplots(rows=1, cols=len(sites), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=sites)
    for i, site in enumerate(sites, start=1):
        e = result.effects[site]
        fig.add_trace(go.Heatmap(z=e.numpy(), x=[f"L{l}" for l in range(e.shape[1])], y=list(result.roles),
                                 colorscale="RdBu_r", zmid=0, zmin=-1, zmax=1, showscale=(i == len(sites)),
                                 colorbar={"title": "share lost"},
                                 hovertemplate="%{y} %{x}: %{z:.3f}<extra>" + site + "</extra>"), row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=(f"Resample ablation over {result.relation}: {result.n_pairs} prompts "
                             f"(logit difference {result.clean_baseline:.2f} clean, "
                             f"{result.corrupt_baseline:.2f} resampled)"), height=420)
    return fig


def relation_circuit_figure(result) -> go.Figure:
    """Held-out top-1 accuracy of the relation circuit against its number of edges."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=result.sizes, y=result.accuracy, mode="lines+markers", name="circuit accuracy"))
    fig.add_trace(go.Scatter(x=result.sizes, y=result.faithfulness, mode="lines+markers",
                             name="circuit logit-difference recovered", line={"dash": "dash"}))
    for y, name in ((result.model_accuracy, "whole model"), (result.ablated_accuracy, "every edge resampled")):
        fig.add_hline(y=y, line_dash="dot", annotation_text=f"{name}: {y:.2f}")
    fig.update_xaxes(type="log", title_text=f"edges kept (of {result.n_edges_total:,})")
    fig.update_yaxes(title_text="held-out", range=[-0.05, 1.1])
    fig.update_layout(title=(f"A circuit for {result.relation}: EAP on {result.n_train} training pairs, "
                             f"scored on {result.n_test} held-out pairs"), height=420)
    return fig
