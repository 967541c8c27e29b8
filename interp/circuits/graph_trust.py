"""Which parts of an attribution graph not to trust, and why: nodes where the frozen replacement model is
known to mislead.

- **Massive activations.** Some positions carry a residual stream many times the prompt's typical norm
  (a second attention sink: SmolLM2's " " before the 4 in "3 + 4 =", " the" in "The keys to the
  cabinet"). The
  features that write there have outsized activations, and the graph freezes the norms that, in the
  real model, divide most of their effect away: on "3 + 4 =" a layer-2 feature of activation 29 was
  predicted to move a logit by −0.90 and moved it by −0.09. A feature or error node is marked where
  the residual stream after its layer is at least :data:`OUTLIER_NORM` times the median norm over
  the prompt's positions (the first, the attention sink, left out).
- **Interventions that disagree.** When an ablation or steering has measured both, the frozen model's
  change to the first logit against the real model's: of opposite signs, or one more than
  :data:`DISAGREE_RATIO` times the other, marks the nodes that were set.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DISAGREE_RATIO", "OUTLIER_NORM", "disagreement", "flag_intervention", "massive_positions", "norm_ratios",
           "trust_summary", "untrusted_nodes"]

OUTLIER_NORM = 4.0
"""A residual norm this many times the prompt's median at that layer marks a massive-activation position."""
DISAGREE_RATIO = 3.0
"""Frozen and real logit changes further apart than this factor (or of opposite signs) disagree."""
NEGLIGIBLE = 0.02
"""Logit changes smaller than this (both) are too small to call a disagreement."""


def norm_ratios(resid_norms: np.ndarray) -> np.ndarray:
    """[layers, positions]: each position's residual norm after each layer over the median of the other
    positions' (position 0, the attention sink, is 0 and out of the median)."""
    r = np.asarray(resid_norms, dtype=np.float64)
    out = np.zeros_like(r)
    if r.shape[1] < 2:
        return out
    med = np.median(r[:, 1:], axis=1, keepdims=True)
    out[:, 1:] = r[:, 1:] / np.maximum(med, 1e-12)
    return out


def untrusted_nodes(graph) -> dict[int, str]:
    """Node index → why not to trust it: massive-activation positions (features and error nodes) and
    interventions whose frozen and real effects disagreed (:func:`flag_intervention`)."""
    out: dict[int, str] = {}
    ratio = graph.norm_ratio
    if ratio is not None:
        tokens = graph.token_text
        for i, (layer, pos, _) in enumerate(graph.features.tolist()):
            if ratio[layer, pos] >= OUTLIER_NORM:
                out[i] = _massive(layer, pos, ratio[layer, pos], tokens)
        for layer, pos in zip(*np.nonzero(ratio >= OUTLIER_NORM)):
            out[graph.error_slice.start + int(layer) * graph.n_pos + int(pos)] = _massive(
                int(layer), int(pos), ratio[layer, pos], tokens)
    for i, why in graph.flags.items():
        out[i] = f"{out[i]}; {why}" if i in out else why
    return out


def _massive(layer: int, pos: int, ratio: float, tokens: list[str]) -> str:
    return (f"massive activation: after layer {layer} the residual stream at {tokens[pos]!r}@{pos} is "
            f"{ratio:.0f}x the prompt's median norm, and frozen norms may overstate this node's effect")


def disagreement(before: float, frozen: float, real: float) -> str | None:
    """Why the frozen and real changes of one logit disagree, or None where they agree (module docstring)."""
    d_f, d_r = frozen - before, real - before
    if max(abs(d_f), abs(d_r)) < NEGLIGIBLE:
        return None
    if d_f * d_r < 0 and min(abs(d_f), abs(d_r)) >= NEGLIGIBLE / 2:
        return f"the frozen model moved it {d_f:+.3f}, the real model {d_r:+.3f}: opposite signs"
    big, small = max(abs(d_f), abs(d_r)), min(abs(d_f), abs(d_r))
    if big > DISAGREE_RATIO * small:
        which = "overstates" if abs(d_f) > abs(d_r) else "understates"
        return f"the frozen model {which} it: {d_f:+.3f} against the real {d_r:+.3f}"
    return None


def flag_intervention(graph, iv) -> str | None:
    """Mark the nodes an intervention set when its frozen and real changes to the first logit disagree
    (``graph.flags``); returns the reason, or None where they agree."""
    why = disagreement(iv.before[0], iv.frozen_after[0], iv.real_after[0])
    if why is None:
        return None
    what = ", ".join(f"{f['layer']}:{f['feature']}@{f['position']}={f['value']:g}" for f in iv.features)
    why = f"setting {what} on {iv.tokens[0]!r}: {why}"
    for f in iv.features:
        for i in graph.find(f["layer"], f["feature"], f["position"]):
            graph.flags[i] = why
    return why


def massive_positions(graph) -> list[dict]:
    """The massive-activation positions: each with the layers after which it is marked and its largest
    ratio to the prompt's median norm."""
    positions = []
    if graph.norm_ratio is not None:
        for pos in range(1, graph.n_pos):
            layers = np.nonzero(graph.norm_ratio[:, pos] >= OUTLIER_NORM)[0]
            if len(layers):
                positions.append({"position": pos, "token": graph.token_text[pos], "layers": layers.tolist(),
                                  "max_norm_ratio": float(graph.norm_ratio[:, pos].max())})
    return positions


def trust_summary(graph, kept: np.ndarray) -> dict:
    """The summary's ``untrusted``: the massive-activation positions (each with its layers and largest
    ratio), how many nodes are marked in all and in the pruned graph (``kept``: its node mask), and
    the marked pruned nodes' reasons, most influential first."""
    marked = untrusted_nodes(graph)
    in_pruned = [i for i in sorted(marked) if kept[i]]
    return {"massive_activation_positions": massive_positions(graph), "nodes": len(marked),
            "nodes_pruned": len(in_pruned),
            "pruned": [{"node": graph.node(i)["label"], "why": marked[i]} for i in in_pruned[:20]]}
