"""Figures of what is linearly readable and steerable: probes and steering curves."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["probe_figure", "steering_figure"]


def probe_figure(reports: list[dict]) -> go.Figure:
    """Held-out accuracy (with its 95% interval) and selectivity against layer, per dataset."""
    fig = make_subplots(1, 2, subplot_titles=("Probe accuracy (held-out groups)", "Selectivity (accuracy − control)"))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, r in enumerate(reports):
        c = palette[i % len(palette)]
        x = r["layers"]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=r["ci_high"] + r["ci_low"][::-1], fill="toself", line={"width": 0},
                                 fillcolor=c, opacity=0.15, showlegend=False, hoverinfo="skip"), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=r["accuracy"], name=r["dataset"], line={"color": c}), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=r["control_accuracy"], name=f"{r['dataset']} control",
                                 line={"color": c, "dash": "dot"}), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=r["selectivity"], name=f"{r['dataset']} selectivity",
                                 line={"color": c}, showlegend=False), 1, 2)
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_layout(title="Linear probes by layer")
    return fig


def steering_figure(curve) -> go.Figure:
    """Mean classifier score of steered generations against α, each prompt as a faint line."""
    fig = go.Figure()
    for j, p in enumerate(curve.prompts):
        fig.add_trace(go.Scatter(x=curve.alphas, y=[row[j] for row in curve.scores], mode="lines",
                                 line={"width": 1}, opacity=0.3, name=p, showlegend=False))
    fig.add_trace(go.Scatter(x=curve.alphas, y=curve.mean_score, mode="lines+markers", name="mean",
                             line={"width": 3}))
    fig.update_layout(title=f"Steering at layer {curve.layer}", xaxis_title="α (multiples of the direction)",
                      yaxis_title="classifier P(positive)", yaxis_range=[0, 1])
    return fig
