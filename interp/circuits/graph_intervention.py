"""Interventions on an attribution graph's features: ablate (set to 0) or steer (set to a value), and
read the logits three ways: in the frozen replacement model, as the graph's edges predict, and in the
real model with attention and norms free. The first two agree by construction; how far the third
agrees is how far to trust the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from interp.circuits.graph import AttributionGraph
from interp.circuits.local_replacement import clean_parts, clean_run, decoders_into, frozen_forward
from interp.errors import InterpError

__all__ = ["Intervention", "active_changes", "intervene"]


@dataclass
class Intervention:
    """Logits before and after setting features, in the frozen replacement model and in the real model."""

    features: list[dict]
    """Each ``{layer, feature, position, value}`` set (0 for an ablation)."""
    tokens: list[str]
    """The graph's logit tokens."""
    before: list[float]
    """The demeaned logits of those tokens, unchanged."""
    frozen_after: list[float]
    """... in the frozen replacement model, downstream features responding linearly."""
    predicted_after: list[float]
    """... as the graph's edges predict (exactly the frozen model's, to float error)."""
    real_after: list[float]
    """... in the real model with attention and norms free: the graph's hypothesis tested."""
    real_top: list[tuple[str, float]]
    """The real model's top next tokens after the intervention, with probabilities."""
    clean_top: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def active_changes(transcoders, acts: dict[int, Tensor], changes) -> list[tuple[int, int, int, float, float]]:
    """Each change ``(layer, feature, position or None, value)`` at every position it applies to, as
    ``(layer, feature, position, value, clean activation)``, from the clean run's activations ``acts``
    (``{layer: [pos, d_sae]}``); one line for a change that cannot apply.

    Only an active feature can be set: the graph has a node, and edges, only for features the prompt
    switches on, so setting an inactive one has no prediction to compare with the real model. Its
    effect is still measurable by steering the residual stream (``interp sae steer``). The CLI calls
    this after the clean forward pass and before the attribution, so a wrong feature costs seconds."""
    if not changes:
        raise InterpError("give at least one feature to ablate or steer")
    sets = []
    for layer, feat, pos, value in changes:
        verb = "ablate" if value == 0 else "steer"
        if layer not in transcoders.layers:
            raise InterpError(f"layer {layer} has no transcoder")
        d_sae = transcoders.layers[layer].cfg.d_sae
        if not 0 <= feat < d_sae:
            raise InterpError(f"feature {feat} is out of range at layer {layer} (0-{d_sae - 1})")
        active = torch.nonzero(acts[layer][:, feat] > 0)[:, 0].tolist()
        if pos is not None and pos not in active:
            where = f"it is active at positions {active}" if active else "it is not active anywhere on this prompt"
            raise InterpError(f"cannot {verb} feature {layer}:{feat}: it is not active at position {pos} ({where}); "
                              "only an active feature has a node and edges in the graph")
        if pos is None and not active:
            raise InterpError(f"cannot {verb} feature {layer}:{feat}: it is not active anywhere on this prompt, so "
                              "the graph has no node for it (only active features can be set; "
                              "`interp sae steer` adds a direction to the residual stream instead)")
        for p_ in ([pos] if pos is not None else active):
            sets.append((layer, feat, p_, value, float(acts[layer][p_, feat])))
    return sets


def intervene(model, transcoders, graph: AttributionGraph, changes: list[tuple[int, int, int | None, float]],
              top: int = 5) -> Intervention:
    """Set features (``(layer, feature, position or None for every active position, value)``; value 0
    ablates) and report the graph's logits three ways: in the frozen replacement model (attention and
    norms frozen, every other active feature following its pre-activation linearly), as the graph's
    edges predict (the same numbers when the graph holds every active feature), and in the real model
    (the decoder row's change added to the MLP output; attention, norms and later layers free)."""
    from interp.tokens import display_token

    tokens = torch.tensor([graph.tokens], device=model.cfg.device)
    clean = clean_run(model, transcoders, tokens)
    cache = clean["cache"]
    mlp_const, pre, acts = clean_parts(model, transcoders, cache)
    respond = {layer: [(f > 0).float(), pre[layer]] for layer, f in acts.items()}
    sets = active_changes(transcoders, acts, changes)
    ids = graph.logit_tokens

    def demeaned(v: Tensor) -> list[float]:
        v = v.float()
        return (v[ids] - v.mean()).tolist()

    # Each set feature's change of every MLP output it writes (a cross-layer transcoder's: its own layer's and
    # every later one's), by output layer.
    moves: dict[int, list] = {}
    for out_layer in range(model.cfg.n_layers):
        for source, rows in decoders_into(transcoders, out_layer):
            moves[out_layer] = moves.get(out_layer, []) + [(p_, (value - a) * rows[feat])
                                                           for ly, feat, p_, value, a in sets if ly == source]
    with torch.no_grad():
        const = {layer: c.clone() for layer, c in mlp_const.items()}
        for layer, feat, p_, value, a in sets:
            respond[layer][0][p_, feat] = 0  # set, not responding
        for layer, shifts in moves.items():
            for p_, v in shifts:
                const[layer][p_] += v
        frozen, _, _, _ = frozen_forward(model, transcoders, tokens, clean, const, 1,
                                         respond={layer: tuple(v) for layer, v in respond.items()})

        def shift(y, *, hook, layer):
            y = y.clone()
            for p_, v in moves[layer]:
                y[0, p_] += v.to(y.dtype)
            return y

        hooks = [(transcoders.output_hook(layer), lambda y, hook, layer=layer: shift(y, hook=hook, layer=layer))
                 for layer, shifts in moves.items() if shifts]
        real = model.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1].float()
    before = clean["logits"][-1]
    predicted = _predict(graph, sets)
    tops = []
    for v in (before, real):
        p = v.softmax(-1)
        idx = p.topk(top).indices.tolist()
        tops.append([(display_token(model.tokenizer, i), float(p[i])) for i in idx])
    return Intervention([{"layer": ly, "feature": f_, "position": p_, "value": v_, "activation": a}
                         for ly, f_, p_, v_, a in sets], graph.logit_text, demeaned(before),
                        demeaned(frozen[0, -1]), predicted, demeaned(real), tops[1], tops[0])


def _predict(graph: AttributionGraph, sets: list) -> list[float]:
    """The graph's edges' prediction for the logit nodes: Δa = Δa_set + J Δa over the feature nodes (each
    active feature follows its pre-activation; J[t, s] = A[t, s] / a_s), then Δlogit = J_logit Δa."""
    F_ = graph.n_features
    a = graph.activations.astype(np.float64)
    A = graph.adjacency.astype(np.float64)
    J_ff = A[:F_, :F_] / np.where(a == 0, 1, a)[None, :]
    J_lf = A[graph.logit_slice, :F_] / np.where(a == 0, 1, a)[None, :]
    fixed = np.zeros(F_, dtype=bool)
    d_set = np.zeros(F_)
    for layer, feat, p_, value, act in sets:
        hit = graph.find(layer, feat, p_)
        if hit:
            fixed[hit[0]] = True
            d_set[hit[0]] = value - act
    d = d_set.copy()
    for _ in range(graph.n_layers + 1):
        d = np.where(fixed, d_set, J_ff @ d)
    before = graph.pre_activations[graph.logit_slice]
    return (before + J_lf @ d).tolist()
