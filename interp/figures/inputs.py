"""Figures of what the model does with an input: next-token predictions and GCG's token search."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from interp.figures.circuits import _labels

__all__ = ["gcg_figure", "prediction_figure"]


def prediction_figure(result) -> go.Figure:
    """Each token's loss given the ones before it, and the top next tokens."""
    fig = make_subplots(1, 2, column_widths=[0.68, 0.32], horizontal_spacing=0.12,
                        subplot_titles=(f"loss per token (mean {result.mean_loss:.2f} nats)", "next token"))
    fig.add_trace(go.Bar(x=_labels(result.tokens), y=result.losses.tolist(), marker_color="#4c78a8",
                         hovertemplate="%{x}: %{y:.2f} nats<extra></extra>", showlegend=False), 1, 1)
    fig.add_trace(go.Bar(y=[repr(t) for t in result.top_tokens][::-1], x=result.top_probs[::-1], orientation="h",
                         marker_color="#f58518", hovertemplate="%{y}: %{x:.3f}<extra></extra>", showlegend=False), 1, 2)
    fig.update_yaxes(title_text="nats", row=1, col=1)
    fig.update_xaxes(title_text="probability", row=1, col=2)
    fig.update_layout(height=420)
    return fig


def gcg_figure(result) -> go.Figure:
    """A GCG run: the best loss so far (never rises) and each step's best candidate, against the step;
    hovering a point shows the best string and the seconds elapsed."""
    steps = list(range(1, len(result.losses) + 1))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps, y=result.step_losses, mode="markers", name="step's best candidate",
                             marker={"size": 5, "opacity": 0.6}))
    fig.add_trace(go.Scatter(x=steps, y=result.losses, mode="lines", name="best so far", line={"shape": "hv"},
                             customdata=[[s, t] for s, t in zip(result.strings, result.times)],
                             hovertemplate="step %{x}: %{y:.3f}<br>%{customdata[0]}<br>%{customdata[1]:.1f} s"
                                           "<extra></extra>"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss")
    fig.update_layout(title=f"GCG on {result.objective}: best {result.best_string!r} ({result.best_loss:.3f})",
                      height=400)
    return fig
