"""Figures of sparse autoencoders: the sparsity-fidelity trade-off, and a transcoder set's fidelity by layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if TYPE_CHECKING:
    from saes.replacement import ReplacementEval

__all__ = ["replacement_figure", "sae_tradeoff_figure"]


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


def replacement_figure(res: "ReplacementEval") -> go.Figure:
    """Per layer: FVU of the MLP output and the CE loss recovered with that MLP alone replaced; the title
    carries the replacement model's figures (every MLP replaced at once)."""
    layers = [f.layer for f in res.layers]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=layers, y=[f.fvu for f in res.layers], name="FVU of mlp_out"), secondary_y=False)
    fig.add_trace(go.Scatter(x=layers, y=[f.ce_loss_recovered for f in res.layers], mode="lines+markers",
                             name="CE loss recovered (this MLP alone)"), secondary_y=True)
    fig.update_layout(title=f"Transcoders by layer; replacement model: {res.ce_loss_recovered:.1%} of the CE gap "
                            f"recovered, top-1 agreement {res.top1_agreement:.1%}, KL {res.kl:.3f}",
                      xaxis_title="layer")
    fig.update_yaxes(title_text="FVU", secondary_y=False)
    fig.update_yaxes(title_text="CE loss recovered", secondary_y=True)
    return fig
