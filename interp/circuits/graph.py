"""Attribution graphs (Ameisen et al. 2025, "Circuit Tracing"): which features, at which tokens, cause
the next token, and through what.

**The local replacement model** of one prompt. Every MLP with a transcoder is replaced by it,
plus an error node per (layer, position): the true MLP output minus the transcoder's. The
attention patterns and the normalisation denominators are frozen at their values on the
prompt (the hooks return the clean run's values), and the feature activations are fixed. Every
node's input is then an affine function of the nodes before it: the residual stream, the
attention OV circuits with frozen patterns, and the transcoders' skip paths are linear. A
layer with no transcoder keeps its whole MLP output as its error node (with a warning).

**Nodes,** in circuit-tracer's order: active features (layer, position, feature), error nodes
(layer-major), input tokens (their embeddings), and the top logits (up to ``max_logits``, or
a cumulative probability of ``logit_prob``), each demeaned over the vocabulary. Features at
the first position are not nodes: it is the attention sink (SmolLM2 has no BOS), and its MLP
output is its error node, as circuit-tracer treats the BOS.

**Edges.** ``A[t, s]`` is the direct effect of source s on target t's pre-activation through
the frozen linear paths: for a feature source a_s·(d_s · ∂t/∂y_l,p), where d_s is its decoder
row and y its layer's MLP output; for an error node e_l,p · ∂t/∂y_l,p; for a token its
embedding · ∂t/∂embedding. Each target's gradients come from one backward pass of a batch of
targets injected at once (``batch`` rows of the frozen forward), never one pass per edge.
What no node explains (the transcoders' b_dec, attention and norm biases, position
embeddings) is each target's bias, so that every row of A sums, with its bias, to the
target's actual pre-activation (:meth:`AttributionGraph.check_exact`).

Long prompts have tens of thousands of active features: feature rows are computed in order
of their estimated influence on the logits, up to ``max_feature_nodes``. The graph's memory is
estimated first, and a prompt that would not fit is refused in one line.

Pruning and the replacement/completeness scores are :mod:`interp.circuits.graph_pruning`; the
graph's JSON, circuit-tracer's, is :mod:`interp.circuits.graph_json`; ablating and steering its
features is :mod:`interp.circuits.graph_intervention`.

``transcoders`` is any object with ``layers`` (a dict of layer → dictionary) and
``input_hook(l)``/``output_hook(l)``; each dictionary offers ``pre_acts``, ``activation``, ``encode``,
``W_enc``, ``W_dec``, ``input_scale``, ``target_scale`` and ``cfg.d_sae`` (:mod:`saes.transcoder`'s
sets do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from interp.circuits.graph_json import graph_to_json
from interp.circuits.graph_pruning import (ROW_BLOCK, GraphScores, abs_row_sums, check_threshold, graph_scores,
                                           partial_influence, prune)
from interp.circuits.graph_memory import MemoryLimit, check_graph_size, machine_limit
from interp.circuits.graph_trust import norm_ratios, trust_summary
from interp.circuits.graph_time import (after_rows_seconds, causal_chunks, chunk_costs, interleaved, prefix_lengths,
                                       rounds_cost)
from interp.circuits.local_replacement import (clean_parts, clean_run, decoder_bias, decoder_rows, decoders_into,
                                               frozen_forward)
from interp.errors import InterpError, warn
from interp.progress import Estimate, progress

__all__ = ["AttributionGraph", "attribution_graph"]

INFLUENCE_ROUND = 128
"""Feature rows computed between re-estimates of influence, when a cap leaves features out."""
CHUNKS_PER_BLOCK = 4
"""Chunks of rows between progress updates (and the estimate's sample) when every feature is a node."""


@dataclass
class AttributionGraph:
    prompt: str
    model_name: str
    tokens: list[int]
    token_text: list[str]
    n_layers: int
    features: np.ndarray
    """[n_features, 3]: layer, position, feature index, in order of influence."""
    activations: np.ndarray
    logit_tokens: list[int]
    logit_text: list[str]
    logit_probs: np.ndarray
    adjacency: np.ndarray
    """[n_nodes, n_nodes] float32, ``A[target, source]``."""
    bias: np.ndarray
    """[n_nodes]: each target's input that no node explains (0 for error and token rows)."""
    pre_activations: np.ndarray
    """[n_nodes]: feature rows' actual pre-activations and logit rows' demeaned logits (clean forward)."""
    labels: list[str] = field(default_factory=list)
    active_features: int = 0
    """Features active on the prompt (nodes are the first ``max_feature_nodes`` of them by influence)."""
    layers_without_transcoder: list[int] = field(default_factory=list)
    seconds: float = 0.0
    dropped: np.ndarray | None = None
    """[n_nodes]: each row's input from active features that ``max_feature_nodes`` left out of the nodes."""
    logit_weight: np.ndarray | None = None
    """[n_logits]: how much each logit counts in the cap, influence, pruning and scores (None: its
    probability, circuit-tracer's weighting). A ``--target`` graph puts all the weight on the target."""
    first_position_errors: str = "keep"
    """``"zero"``: position 0's error nodes have no edges, their input is in the biases (circuit-tracer's
    convention); ``"keep"``: they are sources like any other error node."""
    norm_ratio: np.ndarray | None = None
    """[n_layers, n_pos]: the residual norm after each layer at each position over the prompt's median
    (:mod:`interp.circuits.graph_trust`: a massive-activation position marks its nodes)."""
    flags: dict[int, str] = field(default_factory=dict)
    """Nodes marked by an intervention whose frozen and real effects disagreed (node → why)."""
    estimated_seconds: float | None = None
    """What the run estimated for itself, graph, pruning, scores and writing (see
    :mod:`interp.circuits.graph_time`), against :attr:`seconds` for the graph alone."""

    # ------------------------------------------------------------------ layout

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_errors(self) -> int:
        return self.n_layers * self.n_pos

    @property
    def n_logits(self) -> int:
        return len(self.logit_tokens)

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_pos + self.n_logits

    @property
    def error_slice(self) -> slice:
        return slice(self.n_features, self.n_features + self.n_errors)

    @property
    def token_slice(self) -> slice:
        s = self.n_features + self.n_errors
        return slice(s, s + self.n_pos)

    @property
    def logit_slice(self) -> slice:
        s = self.n_features + self.n_errors + self.n_pos
        return slice(s, s + self.n_logits)

    def logit_weights(self) -> Tensor:
        w = torch.zeros(self.n_nodes, dtype=torch.float64)
        w[self.logit_slice] = torch.as_tensor(self.logit_probs if self.logit_weight is None else self.logit_weight,
                                              dtype=torch.float64)
        return w

    def node(self, i: int) -> dict:
        """What node ``i`` is: kind, layer, position, feature, activation, label."""
        if i < self.n_features:
            layer, pos, feat = (int(v) for v in self.features[i])
            return {"kind": "feature", "layer": layer, "position": pos, "feature": feat,
                    "activation": float(self.activations[i]), "label": self.labels[i] if self.labels else ""}
        if i < self.error_slice.stop:
            layer, pos = divmod(i - self.n_features, self.n_pos)
            return {"kind": "error", "layer": layer, "position": pos, "feature": -1, "activation": None,
                    "label": f"error L{layer}@{pos}"}
        if i < self.token_slice.stop:
            pos = i - self.token_slice.start
            return {"kind": "token", "layer": -1, "position": pos, "feature": self.tokens[pos], "activation": None,
                    "label": f"token {self.token_text[pos]!r}@{pos}"}
        j = i - self.logit_slice.start
        return {"kind": "logit", "layer": self.n_layers, "position": self.n_pos - 1, "feature": self.logit_tokens[j],
                "activation": float(self.logit_probs[j]),
                "label": f"logit {self.logit_text[j]!r} (p={float(self.logit_probs[j]):.3f})"}

    def find(self, layer: int, feature: int, position: int | None = None) -> list[int]:
        """Node indices of a feature (at every position where it is a node, or at ``position``)."""
        f = self.features
        hit = (f[:, 0] == layer) & (f[:, 2] == feature)
        if position is not None:
            hit &= f[:, 1] == position
        return np.nonzero(hit)[0].tolist()

    # ------------------------------------------------------------------ checks, pruning, scores

    def check_exact(self) -> float:
        """The largest |Σ incoming edges + bias − actual pre-activation| over feature and logit rows (with a
        cap on feature nodes, the input from the features left out counts too: :attr:`dropped`)."""
        rows = np.r_[0:self.n_features, self.logit_slice.start:self.logit_slice.stop]
        # Summed in float64 a row block at a time: a float64 copy of a long prompt's matrix is gigabytes.
        got = np.concatenate([self.adjacency[rows[i:i + ROW_BLOCK]].sum(1, dtype=np.float64)
                              for i in range(0, len(rows), ROW_BLOCK)] or [np.zeros(0)]) + self.bias[rows]
        if self.dropped is not None:
            got = got + self.dropped[rows]
        return float(np.abs(got - self.pre_activations[rows]).max()) if len(rows) else 0.0

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98):
        """circuit-tracer's pruning (:func:`interp.circuits.graph_pruning.prune`): node and edge masks."""
        check_threshold("node", node_threshold)
        check_threshold("edge", edge_threshold)
        done = self.__dict__.setdefault("_pruned", {})  # the summary, paths, JSON and figure share one pruning
        key = (float(node_threshold), float(edge_threshold))
        if key not in done:
            A = torch.as_tensor(self.adjacency, dtype=torch.float64)
            done[key] = prune(A, self.logit_weights(), self.n_features, self.n_pos, self.n_logits, node_threshold,
                              edge_threshold)
        return done[key]

    def scores(self, node_threshold: float | None = None, edge_threshold: float | None = None) -> GraphScores:
        """Replacement and completeness scores of the whole graph, or of the pruned one with thresholds."""
        A = torch.as_tensor(self.adjacency, dtype=torch.float64)
        if node_threshold is not None:
            p = self.prune(node_threshold, edge_threshold if edge_threshold is not None else 0.98)
            A = A * p.edge_mask
        return graph_scores(A, self.logit_weights(), self.error_slice, self.token_slice)

    def top_paths(self, target: int | None = None, k: int = 5, node_threshold: float = 0.8,
                  edge_threshold: float = 0.98, max_len: int = 8, sign: int = 0) -> list[dict]:
        """The strongest chains into a logit (default: the top one) in the pruned graph: from the logit,
        follow each best incoming edge (by |weight|) back to a token, branching on the first step.
        ``sign`` +1 keeps the chains whose last edge promotes the logit, -1 those that suppress it (0:
        both, by |weight|). Each chain carries every edge's signed weight and ``effect``: "promotes" or
        "suppresses" (the sign of its last edge, the one into the logit)."""
        mask = self.prune(node_threshold, edge_threshold).edge_mask.numpy()

        def row_of(i: int) -> np.ndarray:  # a node's kept inputs (a row at a time: the matrix can be gigabytes)
            return np.where(mask[i], self.adjacency[i], np.float32(0))

        t = self.logit_slice.start + (target or 0)
        into = row_of(t)
        row = into if sign == 0 else np.where(np.sign(into) == sign, into, 0.0)
        firsts = np.argsort(-np.abs(row), kind="stable")[:k]
        paths = []
        for s in firsts:
            if row[s] == 0:
                continue
            chain, weights, node = [int(s)], [float(into[s])], int(s)
            while len(chain) < max_len and node < self.n_features:
                inputs = row_of(node)
                nxt = int(np.argmax(np.abs(inputs)))
                if inputs[nxt] == 0:
                    break
                chain.append(nxt)
                weights.append(float(inputs[nxt]))
                node = nxt
            nodes = [self.node(i)["label"] for i in reversed(chain)] + [self.node(t)["label"]]
            paths.append({"nodes": nodes, "weights": list(reversed(weights)), "strength": float(into[s]),
                          "effect": "promotes" if into[s] > 0 else "suppresses"})
        return paths

    def top_logit_input(self) -> dict:
        """The first logit's (the target's, with ``--target``) input from the feature nodes kept and from
        the active features the cap left out, and the weighting that chose them."""
        t = self.logit_slice.start
        return {"token": self.logit_text[0], "from_kept_features": float(self.adjacency[t, :self.n_features].sum()),
                "from_left_out_features": float(self.dropped[t]) if self.dropped is not None else 0.0,
                "weighting": "target" if self.logit_weight is not None else "probability"}

    # ------------------------------------------------------------------ files and figures

    def to_json(self, node_threshold: float = 0.8, edge_threshold: float = 0.98, slug: str = "graph",
                scan: str = "") -> dict:
        """circuit-tracer's graph JSON of the pruned graph (docs/graph_json.md)."""
        return graph_to_json(self, node_threshold, edge_threshold, slug, scan)

    def figure(self, node_threshold: float = 0.8, edge_threshold: float = 0.98, pinned: list[str] | None = None):
        from interp.figures.attribution_graph import graph_figure

        return graph_figure(self.to_json(node_threshold, edge_threshold), pinned=pinned)

    def summary(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> dict:
        p = self.prune(node_threshold, edge_threshold)
        return {"prompt": self.prompt, "model": self.model_name, "tokens": self.token_text,
                "active_features": self.active_features, "feature_nodes": self.n_features,
                "nodes": self.n_nodes, "edges": int(np.count_nonzero(self.adjacency)),
                "nodes_pruned": int(p.node_mask.sum()), "edges_pruned": int(p.edge_mask.sum()),
                "scores": self.scores().to_dict(),
                "scores_pruned": self.scores(node_threshold, edge_threshold).to_dict(),
                "logits": [{"token": t, "probability": float(q)} for t, q in zip(self.logit_text, self.logit_probs)],
                "top_paths": (self.top_paths(None, 3, node_threshold, edge_threshold, sign=1)
                              + self.top_paths(None, 3, node_threshold, edge_threshold, sign=-1)),
                "top_logit_input": self.top_logit_input(),
                "untrusted": trust_summary(self, p.node_mask.numpy()),
                "exactness_max_error": self.check_exact(),
                "layers_without_transcoder": self.layers_without_transcoder,
                "first_position_errors": self.first_position_errors, "seconds": self.seconds,
                "estimated_seconds": self.estimated_seconds}


# ---------------------------------------------------------------------------------------------- the computation


def attribution_graph(model, transcoders, prompt: str, max_logits: int = 10, logit_prob: float = 0.95,
                      max_feature_nodes: int = 4096, batch: int = 32, target: str | None = None,
                      weight_target: bool = True, label_features: bool = True, memory_limit: MemoryLimit | int | None = None,
                      before_edges: Callable[[dict[int, Tensor]], object] | None = None,
                      first_position_errors: str = "auto") -> AttributionGraph:
    """The attribution graph of ``prompt``'s next token (see the module docstring). ``before_edges``, if
    given, sees the clean run's feature activations (``{layer: [pos, d_sae]}``) before any edge is
    computed, and may refuse the work by raising.

    ``first_position_errors``: position 0 is the attention sink, so it has no feature nodes and its MLP
    output is all error node. ``"zero"`` (circuit-tracer's convention) moves those error nodes' input
    into the biases (their nodes stay, without edges); ``"keep"`` keeps them as sources. ``"auto"``:
    zero where position 0 is a BOS (it says nothing of the prompt), keep where it is the prompt's first
    token, whose MLP output the later positions read (SmolLM2 prepends no BOS).

    With ``target``, the target logit carries all the weight (``weight_target``) in choosing the capped
    features, in influence, pruning and the scores, so that a low-probability target keeps the features
    that drive it; the other logits stay as nodes. ``weight_target=False`` keeps the probabilities'
    weighting (circuit-tracer's), where a target of p 0.006 gets the features of the top token."""
    from interp.tokens import display_token, to_tokens

    t0 = time.perf_counter()
    if not prompt or not prompt.strip():
        raise InterpError("the prompt is empty: give the text whose next token to explain")
    if max_feature_nodes < 1:
        raise InterpError(f"--max-feature-nodes must be at least 1, not {max_feature_nodes}")
    if not transcoders.layers:
        raise InterpError("the transcoder set is empty")
    tokens = to_tokens(model, prompt).to(model.cfg.device)
    P, L, D = tokens.shape[1], model.cfg.n_layers, model.cfg.d_model
    if P < 2:
        raise InterpError(f"the prompt {prompt!r} is one token; a graph needs at least two (the first is the "
                          "attention sink)")
    if first_position_errors not in ("auto", "keep", "zero"):
        raise InterpError(f"first_position_errors must be auto, keep or zero, not {first_position_errors!r}")
    zero_first = first_position_errors == "zero" or (first_position_errors == "auto"
                                                     and bool(getattr(model.cfg, "default_prepend_bos", False)))
    check_graph_size(P, L, model.cfg.d_model, model.cfg.d_vocab, model.cfg.n_heads, transcoders, max_feature_nodes,
                     batch, machine_limit(str(model.cfg.device)) if memory_limit is None else memory_limit)
    missing = [layer for layer in range(L) if layer not in transcoders.layers]
    if missing:
        warn(f"layers {','.join(map(str, missing))} have no transcoder: their whole MLP output is an error node")
    t_clean = time.perf_counter()
    clean = clean_run(model, transcoders, tokens)
    clean_seconds = time.perf_counter() - t_clean
    cache = clean["cache"]
    logits = clean["logits"][-1]
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    if target is not None:
        from interp.tokens import single_token

        tid = single_token(model, target, "--target")
        if float(probs[tid]) <= 0:
            raise InterpError(f"--target {target!r} has probability 0 here")
        chosen = [tid] + [int(i) for i in order[:max_logits] if int(i) != tid][:max_logits - 1]
    else:
        cum, chosen = 0.0, []
        for i in order[:max_logits].tolist():
            chosen.append(int(i))
            cum += float(probs[i])
            if cum >= logit_prob:
                break
    logit_probs = probs[chosen].cpu().numpy().astype(np.float64)
    logit_weight = None
    if target is not None and weight_target:
        logit_weight = np.zeros_like(logit_probs)
        logit_weight[0] = 1.0
    weights = logit_probs if logit_weight is None else logit_weight

    # The sources: active features (position 0 excluded), error nodes, token embeddings.
    mlp_const, pre_clean, f_clean = clean_parts(model, transcoders, cache)
    if before_edges is not None:
        before_edges(f_clean)
    feats, acts, sources = [], [], {}
    for layer in range(L):
        if layer not in transcoders.layers:
            continue
        f = f_clean[layer]
        pos, j = torch.nonzero(f > 0, as_tuple=True)
        sources[layer] = (pos, j, f[pos, j], torch.arange(len(feats), len(feats) + len(j)))  # its columns
        feats += [(layer, p_, j_) for p_, j_ in zip(pos.tolist(), j.tolist())]
        acts.append(f[pos, j])
    # Each MLP output's features (a cross-layer transcoder's from every layer at or below), their a·d, and
    # the error node: what the features and b_dec leave of the output.
    by_layer, errors = {}, {}
    for layer in range(L):
        into = [(sources[i], rows) for i, rows in decoders_into(transcoders, layer) if i in sources]
        if layer not in transcoders.layers:
            errors[layer] = mlp_const[layer]
            continue
        pos = torch.cat([src[0] for src, _ in into])
        scaled = torch.cat([src[2][:, None] * rows[src[1]] for src, rows in into])  # each feature's a·d
        cols_l = torch.cat([src[3] for src, _ in into])
        order = torch.argsort(pos, stable=True)  # by position, as _grouped needs
        by_layer[layer] = _grouped(pos[order], scaled[order], cols_l[order])
        recon = torch.zeros(P, model.cfg.d_model).index_add_(0, pos, scaled)
        errors[layer] = mlp_const[layer] - recon - decoder_bias(transcoders.layers[layer])
    if zero_first:  # the sink's MLP output goes to the biases (below), not to error nodes
        errors = {layer: torch.cat([torch.zeros_like(e[:1]), e[1:]]) for layer, e in errors.items()}
    n_active = len(feats)
    feats_t = torch.tensor(feats, dtype=torch.long).view(-1, 3)
    acts_t = torch.cat(acts) if acts else torch.zeros(0)
    emb = cache["hook_embed"][0].float()
    resid_norms = torch.stack([cache[f"blocks.{layer}.hook_resid_post"][0].float().norm(dim=-1)
                               for layer in range(L)]).cpu().numpy()

    # Each row's inputs from one backward pass of a batch of targets, through a forward of one copy of the
    # prompt: the chunk's targets are a batch of vector-Jacobian products (``is_grads_batched``), so the
    # forward and the graph it keeps are a batch's worth smaller. A target at position p reads nothing
    # after p (causal attention), so its backward runs through a forward of the prompt's first positions
    # only, rounded up to one of a few lengths that share forwards (interp.circuits.graph_time).
    n_src = n_active + L * P + P
    # A demeaned logit is the unembedding's input · (W_U[:, t] − mean_v W_U[:, v]): inject that direction,
    # formed in float64, rather than backpropagate (onehot − 1/V) through a float32 sum over the vocabulary.
    W_U = model.W_U.detach()
    W_U_mean = _mean_column(W_U)
    demeaned_rows = {t: (W_U[:, t].double() - W_U_mean).float() for t in chosen}
    forwards: dict[int, tuple] = {}  # prefix length → (embedding leaf, MLP leaves, inputs) of its frozen forward

    def rows_for(targets: list[tuple], chunks: list[np.ndarray] | None = None) -> Tensor:
        """[len(targets), n_src]: (feature activations..., error nodes..., tokens...) into each target, in
        ``chunks`` of them (default :func:`causal_chunks`)."""
        out = torch.zeros(len(targets), n_src)
        tops = np.array([t[1] if t[0] == "feature" else L for t in targets])
        lengths = prefix_lengths([t[2] if t[0] == "feature" else P - 1 for t in targets], P)
        for idx in causal_chunks(tops, lengths, batch, D) if chunks is None else chunks:
            idx = idx.tolist()
            length = int(lengths[idx].max())
            if length not in forwards:
                forwards[length] = frozen_forward(model, transcoders, tokens, clean, mlp_const, 1, length=length)[1:]
            E, leaves, inputs = forwards[length]
            g_in = {}
            for b, i in enumerate(idx):
                t = targets[i]
                if t[0] == "logit":
                    g = g_in.setdefault("unembed", inputs["unembed"].new_zeros(len(idx), *inputs["unembed"].shape))
                    g[b, 0, 0] = demeaned_rows[t[1]].to(g.dtype)
                else:
                    _, layer, p_, j_ = t
                    tc = transcoders.layers[layer]
                    g = g_in.setdefault(layer, inputs[layer].new_zeros(len(idx), *inputs[layer].shape))
                    g[b, 0, p_] = (tc.W_enc[:, j_] * tc.input_scale).to(g.dtype)
            # Only the outputs this chunk injects into: a zero gradient still costs its backward.
            grads = torch.autograd.grad([inputs[k] for k in g_in], [E] + [leaves[layer] for layer in range(L)],
                                        list(g_in.values()), retain_graph=True, allow_unused=True,
                                        is_grads_batched=True)
            with torch.no_grad():
                out[idx] = _columns([None if g is None else g[:, 0] for g in grads], len(idx), length)
        return out

    def _columns(grads, n: int, length: int) -> Tensor:
        """One chunk's rows from its gradients ([n, length, d_model]) at the embedding and at every MLP output
        (a layer above the chunk's targets has none, and positions from ``length`` on none: their columns
        are 0)."""
        cols = torch.zeros(n, n_src)
        if grads[0] is not None:
            cols[:, n_active + L * P:n_active + L * P + length] = (grads[0].float() * emb[:length]).sum(-1)
        for layer in range(L):
            g = grads[1 + layer]
            if g is None:
                continue
            g = g.float()
            if layer in by_layer:  # every active feature's a·d · gradient at its position, one product a layer
                at, contrib, columns = by_layer[layer]
                m = int(torch.searchsorted(at, length))  # the groups before ``length``
                if m:
                    prod = torch.bmm(g[:, at[:m]].transpose(0, 1), contrib[:m].transpose(1, 2))  # [m, n, K]
                    real = columns[:m] >= 0  # added: a cross-layer feature has a part in every layer it writes
                    cols.index_add_(1, columns[:m][real], prod.transpose(0, 1)[:, real])
            start = n_active + layer * P
            cols[:, start:start + length] = (g * errors[layer][:length]).sum(-1)
        return cols

    with torch.enable_grad():
        logit_rows = rows_for([("logit", t) for t in chosen])
        feat_targets = [("feature", int(l_), int(p_), int(j_)) for l_, p_, j_ in feats]
        kept = min(n_active, max_feature_nodes)
        feat_layers = feats_t[:, 0].numpy()

        def after() -> float:  # the bias run, labels, pruning, scores and writing, once rows are timed
            return after_rows_seconds(kept + L * P + P + len(chosen), L, kept * n_src, clean_seconds,
                                      _label_seconds(model, transcoders, kept) if label_features else 0.0)
        if n_active <= max_feature_nodes:
            selected = list(range(n_active))
            feat_rows = torch.zeros(n_active, n_src)
            # Chunks of rows close in layer and position (a row's backward runs down from its layer, over the
            # positions up to its own), taken in an order that spreads every prefix of the work over the
            # chunks, so the first blocks time a fair sample of it.
            positions = feats_t[:, 1].numpy()
            chunks = causal_chunks(feat_layers, prefix_lengths(positions, P), batch, D)
            chunks = [chunks[i] for i in interleaved(len(chunks))]
            costs = [chunk_costs(feat_layers[c], positions[c], P, batch, D) for c in chunks]
            total_cost = sum(costs) or 1.0
            estimate = Estimate(f"attribution graph of {P} tokens", n_active, "feature rows",
                                "a shorter prompt, or a lower --max-feature-nodes", warmup=True, after=after,
                                after_what="prune, score and write")
            bar = progress(total=n_active, desc="attribution graph", unit="row")
            for b in range(0, len(chunks), CHUNKS_PER_BLOCK):
                block = chunks[b:b + CHUNKS_PER_BLOCK]
                for c in block:
                    feat_rows[c] = rows_for([feat_targets[i] for i in c], [np.arange(len(c))])
                n_rows = sum(len(c) for c in block)
                bar.update(n_rows)
                estimate.done(n_rows, sum(costs[b:b + CHUNKS_PER_BLOCK]) / total_cost)
            bar.close()
            row_sums = abs_row_sums(feat_rows)
        else:
            selected, feat_rows, row_sums, estimate = _by_influence(
                rows_for, feat_targets, feat_layers, feats_t[:, 1].numpy(), P, D, logit_rows, weights, n_active,
                max_feature_nodes, batch, f"attribution graph of {P} tokens", after)
    forwards.clear()  # the frozen forwards' graphs: freed before the adjacency is built
    # Order the selected features by influence and assemble the dense adjacency over nodes.
    w = torch.as_tensor(weights, dtype=torch.float32)
    est = partial_influence(feat_rows, row_sums, selected, logit_rows, w, n_active)
    order_sel = sorted(range(len(selected)), key=lambda i: -float(est[selected[i]]))
    sel = [selected[i] for i in order_sel]
    F_ = len(sel)
    n_nodes = F_ + L * P + P + len(chosen)
    A = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    src_cols = torch.tensor(sel + list(range(n_active, n_src)), dtype=torch.long)  # features, errors, tokens
    dropped = np.zeros(n_nodes)  # input from active features left out by the cap (0 without one)
    out_cols = torch.ones(n_active, dtype=torch.bool)
    out_cols[sel] = False
    for i0 in range(0, F_, ROW_BLOCK):  # in blocks: a 128-token prompt's rows are a gigabyte
        rows = feat_rows[order_sel[i0:i0 + ROW_BLOCK]]
        A[i0:i0 + len(rows), :F_ + L * P + P] = rows[:, src_cols].numpy()
        if F_ < n_active:
            dropped[i0:i0 + len(rows)] = rows[:, :n_active][:, out_cols].double().sum(1).numpy()
    del feat_rows
    A[F_ + L * P + P:, :F_ + L * P + P] = logit_rows[:, src_cols].numpy()
    if F_ < n_active:
        dropped[F_ + L * P + P:] = logit_rows[:, :n_active][:, out_cols].double().sum(1).numpy()

    # Bias terms: each target's value with every source at zero, in the frozen model.
    with torch.no_grad():  # (the pre-activations below too)
        zero_const = {layer: (decoder_bias(transcoders.layers[layer]).expand(P, -1) if layer in transcoders.layers
                              else torch.zeros(P, model.cfg.d_model)) for layer in range(L)}
        if zero_first:  # position 0's whole MLP leaf (no features there) is a constant
            zero_const = {layer: torch.cat([mlp_const[layer][:1], c[1:]]) for layer, c in zero_const.items()}
        lz, _, _, inz = frozen_forward(model, transcoders, tokens, clean, zero_const, 1,
                                       embed=torch.zeros_like(emb))
    bias = np.zeros(n_nodes)
    pre_act = np.zeros(n_nodes)
    lz = lz[0, -1].float()
    clean_last = logits.float()
    for i, t in enumerate(chosen):
        bias[F_ + L * P + P + i] = float(lz[t] - lz.mean())
        pre_act[F_ + L * P + P + i] = float(clean_last[t] - clean_last.mean())
    with torch.no_grad():
        for i, s in enumerate(sel):
            layer, p_, j_ = feats[s]
            bias[i] = float(transcoders.layers[layer].pre_acts(inz[layer][0, p_][None].float())[0, j_])
            pre_act[i] = float(pre_clean[layer][p_, j_])
    feats_sel = feats_t[sel].numpy() if F_ else np.zeros((0, 3), dtype=np.int64)
    acts_sel = acts_t[sel].numpy() if F_ else np.zeros(0)
    labels = _labels(model, transcoders, feats_sel) if label_features else []
    token_text = [display_token(model.tokenizer, int(t)) for t in tokens[0]]
    graph = AttributionGraph(prompt, model.cfg.model_name, tokens[0].tolist(), token_text, L, feats_sel, acts_sel,
                             chosen, [display_token(model.tokenizer, t) for t in chosen], logit_probs, A, bias,
                             pre_act, labels, n_active, missing, time.perf_counter() - t0, dropped, logit_weight,
                             "zero" if zero_first else "keep", norm_ratios(resid_norms), {},
                             (estimate.t0 - t0) + estimate.seconds if estimate.seconds is not None else None)
    fed = graph.top_logit_input()
    if target is not None and F_ < n_active and abs(fed["from_left_out_features"]) > abs(fed["from_kept_features"]):
        warn(f"the features kept give {target!r} {fed['from_kept_features']:+.2f} of input and the ones "
             f"--max-feature-nodes left out {fed['from_left_out_features']:+.2f}: raise --max-feature-nodes to "
             "explain it")
    return graph


def _by_influence(rows_for, feat_targets, feat_layers, feat_positions, n_pos, d_model, logit_rows, logit_weights,
                  n_active, cap, batch, what, after):
    """circuit-tracer's order for a capped graph: compute rows for the features of highest estimated
    influence first, re-estimating as rows arrive. Returns the features, their rows, the rows'
    :func:`abs_row_sums` and the run's :class:`Estimate`."""
    w = torch.as_tensor(logit_weights, dtype=torch.float32)
    done: list[int] = []
    rows = torch.zeros(cap, logit_rows.shape[1])
    sums = torch.zeros(cap)
    bar = progress(total=cap, desc="attribution graph (by influence)", unit="row")
    estimate = Estimate(what, cap, "feature rows", "a shorter prompt, or a lower --max-feature-nodes", warmup=True,
                        after=after, after_what="prune, score and write")
    spent = 0.0  # the cost of the rounds so far, in layer-backwards (interp.circuits.graph_time)
    while len(done) < cap:
        n = len(done)
        est = partial_influence(rows[:n], sums[:n], done, logit_rows, w, n_active)
        if done:
            est[torch.tensor(done)] = -1
        take = min(INFLUENCE_ROUND, cap - n)  # not the batch: the selection must not depend on it
        nxt = est.topk(take).indices.tolist()
        rows[n:n + take] = rows_for([feat_targets[i] for i in nxt])
        sums[n:n + take] = abs_row_sums(rows[n:n + take])
        done += nxt
        bar.update(take)
        if not estimate.said:  # the rounds to come: the features this estimate of influence would take next
            cost = chunk_costs(feat_layers[nxt], feat_positions[nxt], n_pos, batch, d_model)
            spent += cost
            est[torch.tensor(nxt)] = -1
            future = est.topk(cap - len(done)).indices.numpy()
            estimate.done(take, cost / (spent + rounds_cost(feat_layers[future], feat_positions[future], n_pos,
                                                            INFLUENCE_ROUND, batch, d_model)))
    bar.close()
    return done, rows, sums, estimate


def _grouped(pos: Tensor, scaled: Tensor, columns: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One layer's active features in groups of up to K at one position (K: the layer's mean count per
    position, rounded up, so that padding at most doubles them), for one batched product a layer:
    (each group's position [m], the features' a·d [m, K, d_model] (0 padding), their source columns
    [m, K] (-1 padding)). ``pos`` is sorted (row-major nonzero), and so are the groups."""
    if len(pos) == 0:
        return pos, scaled.new_zeros(0, 1, scaled.shape[1]), columns.new_zeros(0, 1)
    at, counts = torch.unique_consecutive(pos, return_counts=True)
    k = max(1, -(-len(pos) // len(at)))
    per = -(-counts // k)  # groups at each position
    group_pos = torch.repeat_interleave(at, per)
    first_group = torch.cumsum(per, 0) - per  # each position's first group
    rank = torch.arange(len(pos)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # within its position
    group = torch.repeat_interleave(first_group, counts) + rank // k
    contrib = scaled.new_zeros(len(group_pos), k, scaled.shape[1])
    contrib[group, rank % k] = scaled
    cols = torch.full((len(group_pos), k), -1, dtype=torch.long)
    cols[group, rank % k] = columns
    return group_pos, contrib, cols


def _mean_column(W_U: Tensor, block: int = 16384) -> Tensor:
    """mean_v W_U[:, v] in float64, a block of columns at a time: a float64 copy of Gemma's 640 × 262,144
    unembedding would be 1.3 GB."""
    total = torch.zeros(W_U.shape[0], dtype=torch.float64, device=W_U.device)
    for start in range(0, W_U.shape[1], block):
        total += W_U[:, start:start + block].double().sum(1)
    return total / W_U.shape[1]


LABELLED = 256
"""Feature nodes (the most influential) labelled by their logit effects; each costs a d_model × vocab product."""


LABEL_BLOCK = 64
"""Labels computed per product with the unembedding: one matrix product instead of 64 vector ones."""


@torch.no_grad()
def _labels(model, transcoders, feats: np.ndarray, k: int = 3) -> list[str]:
    """A feature's label without a store: its top logit-effect tokens (decoder row · unembedding), for the
    first :data:`LABELLED` nodes (in influence order); the rest are named ``L{layer}#{feature}``."""
    from interp.tokens import display_token

    W_U = model.W_U.detach().float()
    names = [f"L{layer}#{j}" for layer, _, j in feats.tolist()]
    n = min(len(feats), LABELLED)
    for i0 in range(0, n, LABEL_BLOCK):
        block = feats[i0:min(n, i0 + LABEL_BLOCK)]
        d = torch.stack([decoder_rows(transcoders.layers[layer])[j] for layer, _, j in block.tolist()])
        top = (d.float() @ W_U).topk(k, dim=1).indices.tolist()
        for i, t in enumerate(top):
            names[i0 + i] += " → " + ",".join(repr(display_token(model.tokenizer, v)) for v in t)
    return names


@torch.no_grad()
def _label_seconds(model, transcoders, n_features: int) -> float:
    """The time :func:`_labels` will take for ``n_features`` nodes, from one block of it."""
    n = min(n_features, LABELLED)
    if n == 0:
        return 0.0
    tc = next(iter(transcoders.layers.values()))
    d = decoder_rows(tc)[:min(n, LABEL_BLOCK)].float()
    t0 = time.perf_counter()
    (d @ model.W_U.detach().float()).topk(3, dim=1).indices.tolist()
    return (time.perf_counter() - t0) * -(-n // LABEL_BLOCK)

