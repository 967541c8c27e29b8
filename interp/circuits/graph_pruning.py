"""Influence, pruning and scores of an attribution graph, with circuit-tracer's definitions.

The adjacency ``A[target, source]`` holds direct effects. Nodes are ordered features,
error nodes, tokens, logits (logits last), as in circuit-tracer's graphs.

- **Normalisation:** Â = |A| with each row divided by its sum (a node's inputs as shares).
- **Influence:** with ``w`` the logit probabilities on the logit rows (0 elsewhere),
  influence = w·(Â + Â² + …) = w·((I − Â)⁻¹ − I). A graph is a DAG, so Â is nilpotent and
  the series ends; it is summed by repeated products, never an inverse.
- **Partial influence:** while a capped graph's feature rows are computed in order of influence,
  the influence through the rows so far (:func:`partial_influence`) picks the next ones.
- **Node pruning:** keep the smallest set of nodes, by influence, reaching ``node_threshold``
  of the total; tokens and logits always stay.
- **Edge pruning:** on the node-pruned matrix, an edge's score is its normalised weight times
  its target's influence plus logit weight; keep the edges reaching ``edge_threshold`` of
  the total score. Then drop, until nothing changes, feature and error nodes left with no
  outgoing edge and feature nodes left with no incoming one.
- **Replacement score:** of the influence that tokens and error nodes have on the logits,
  the share from tokens.
- **Completeness score:** each node's share of input from non-error nodes, averaged with
  weights influence + logit weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError

__all__ = ["GraphScores", "Pruned", "abs_row_sums", "check_threshold", "cumulative_share", "graph_scores", "influence",
           "normalize_rows",
           "partial_influence", "prune", "threshold_for"]

ROW_BLOCK = 512
"""Rows handled at once where the whole matrix would make a large temporary (abs, gathers)."""


def check_threshold(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise InterpError(f"--{name}-threshold must be in (0, 1], not {value}")


def normalize_rows(A: Tensor) -> Tensor:
    a = A.abs()
    return a.div_(a.sum(1, keepdim=True).clamp_min(1e-10))  # in place: a graph's matrix can be gigabytes


def influence(A_hat: Tensor, w: Tensor, max_iter: int = 10_000) -> Tensor:
    """w·(Â + Â² + …), summed until the products vanish (a DAG's depth bounds the count)."""
    current = w @ A_hat
    total = current.clone()
    for _ in range(max_iter):
        if not bool(current.any()):
            return total
        current = current @ A_hat
        total += current
    raise ValueError("the adjacency matrix has a cycle: influence did not converge")


def abs_row_sums(rows: Tensor) -> Tensor:
    """Each row's Σ|input| over every source (what circuit-tracer's normalisation divides by)."""
    return torch.cat([rows[i:i + ROW_BLOCK].abs().sum(1) for i in range(0, len(rows), ROW_BLOCK)]
                     or [torch.zeros(0)]).clamp_min(1e-10)


def partial_influence(rows: Tensor, row_sums: Tensor, done: list[int], logit_rows: Tensor, w: Tensor,
                       n_active: int) -> Tensor:
    """Each active feature's influence on the logits (circuit-tracer's normalised influence) through the
    logit rows and the feature rows computed so far, for a graph whose rows come in order of influence:
    ``rows[i]`` is feature ``done[i]``'s, ``row_sums`` their :func:`abs_row_sums`. Every path runs
    through computed rows, so the series is summed on the square block among ``done``
    (:func:`influence`), and one more product carries it to every feature."""
    direct = w @ normalize_rows(logit_rows)[:, :n_active]
    if not done:
        return direct
    idx = torch.tensor(done)
    block = rows[:, idx].abs() / row_sums[:, None]
    through = direct[idx] + influence(block, direct[idx])  # each computed feature's total influence
    total = direct.clone()
    for i in range(0, len(done), ROW_BLOCK):
        total += (through[i:i + ROW_BLOCK] / row_sums[i:i + ROW_BLOCK]) @ rows[i:i + ROW_BLOCK, :n_active].abs()
    return total


def threshold_for(scores: Tensor, share: float) -> float:
    """The smallest score among the fewest top scores whose sum reaches ``share`` of the total."""
    s = scores.flatten()
    s = s[s > 0].sort(descending=True).values  # zeros add nothing to the sum, and a large graph's are most
    total = float(s.sum())
    if total <= 0:
        return float("inf")
    cum = s.cumsum(0) / total
    idx = int(torch.searchsorted(cum, torch.tensor(share, dtype=cum.dtype)).clamp(max=len(s) - 1))
    return float(s[idx])


@dataclass
class Pruned:
    node_mask: Tensor
    edge_mask: Tensor
    node_influence: Tensor
    """Each node's influence on the logits in the unpruned graph (logit rows: their weight)."""
    cumulative: Tensor
    """circuit-tracer's ``cumulative_scores``: with nodes sorted by influence (logit weights left out),
    the share of the total reached up to and including each node; its frontend filters on it."""


def prune(A: Tensor, logit_weights: Tensor, n_features: int, n_tokens: int, n_logits: int,
          node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """Node and edge masks (see the module docstring). ``logit_weights`` is over all nodes; the node
    order is ``n_features`` features, then error nodes, ``n_tokens`` tokens and ``n_logits`` logits."""
    check_threshold("node", node_threshold)
    check_threshold("edge", edge_threshold)
    keep_tail = n_logits + n_tokens
    node_inf = influence(normalize_rows(A), logit_weights)
    node_mask = node_inf >= threshold_for(node_inf, node_threshold)
    node_mask[len(A) - keep_tail:] = True
    pruned = A.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    nonzero = pruned != 0
    norm = normalize_rows(pruned)
    del pruned
    target_inf = influence(norm, logit_weights) + logit_weights
    edge_scores = norm.mul_(target_inf[:, None])
    edge_mask = (edge_scores >= threshold_for(edge_scores, edge_threshold)) & nonzero
    del edge_scores, norm, nonzero
    n_feat_err = len(A) - keep_tail
    while True:
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[:n_feat_err] &= edge_mask[:, :n_feat_err].any(0)  # something downstream uses it
        node_mask[:n_features] &= edge_mask[:n_features].any(1)  # a feature needs an input
        if bool((before == node_mask).all()):
            break
    return Pruned(node_mask, edge_mask, node_inf + logit_weights, cumulative_share(node_inf))


def cumulative_share(scores: Tensor) -> Tensor:
    """Each entry's place in the running share of the total, largest first (circuit-tracer's
    ``cumulative_scores``): the largest gets its own share, the smallest 1."""
    values, order = torch.sort(scores, descending=True)
    total = values.sum()
    out = torch.zeros_like(scores)
    out[order] = values.cumsum(0) / (total if total > 0 else 1)
    return out


@dataclass
class GraphScores:
    replacement: float
    completeness: float

    def to_dict(self) -> dict:
        return {"replacement": self.replacement, "completeness": self.completeness}


def graph_scores(A: Tensor, logit_weights: Tensor, error_slice: slice, token_slice: slice) -> GraphScores:
    norm = normalize_rows(A)
    inf = influence(norm, logit_weights)
    token_inf = float(inf[token_slice].sum())
    error_inf = float(inf[error_slice].sum())
    replacement = token_inf / (token_inf + error_inf) if token_inf + error_inf > 0 else float("nan")
    non_error = 1 - norm[:, error_slice].sum(1)
    weight = inf + logit_weights
    completeness = float((non_error * weight).sum() / weight.sum().clamp_min(1e-30))
    return GraphScores(replacement, completeness)
