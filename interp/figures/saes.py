"""Figures of sparse autoencoders: the sparsity-fidelity trade-off."""

from __future__ import annotations

import plotly.graph_objects as go

__all__ = ["sae_tradeoff_figure"]


def sae_tradeoff_figure(points: list[dict]) -> go.Figure:
    """FVU against L0 per SAE architecture (each point one trained SAE, labelled by its sparsity knob)."""
    fig = go.Figure()
    for arch in dict.fromkeys(p["architecture"] for p in points):
        pts = sorted((p for p in points if p["architecture"] == arch and not p.get("main")), key=lambda p: p["l0"])
        if pts:
            fig.add_trace(go.Scatter(x=[p["l0"] for p in pts], y=[p["fvu"] for p in pts], mode="lines+markers+text",
                                     name=arch, text=[f"{p['knob']}={p['value']:g}" for p in pts],
                                     textposition="top center"))
    for p in points:
        if p.get("main"):
            fig.add_trace(go.Scatter(x=[p["l0"]], y=[p["fvu"]], mode="markers", marker={"symbol": "star", "size": 14},
                                     name=f"{p['architecture']} k={p['value']:g}, {p['tokens'] / 1e6:.1f}M tokens"))
    fig.update_layout(title="SAE sparsity / reconstruction trade-off (held-out activations)",
                      xaxis_title="L0 (active latents per token)", yaxis_title="FVU (1 − explained variance)",
                      xaxis_type="log")
    return fig
