"""Edge-level circuit discovery: edge attribution patching (EAP) and faithfulness.

The computational graph (Conmy et al. 2023; Syed et al. 2023): *upstream* nodes write
to the residual stream (the embeddings ``input``, each attention head ``L{l}H{h}``
through ``z_h W_O^h``, each ``MLP{l}``); *receivers* read from it (each head's q, and
each KV head's k and v, through the per-head input forks of
``set_use_split_qkv_input``; each MLP's input fork ``ln2.hook_in``; the ``logits``
through ``ln_final.hook_in``). An edge u → v exists when u comes before v.

EAP (3 passes in all: a clean forward, a corrupt forward and one backward) scores
every edge with the first-order effect of patching it::

    score(u → v) = (out_u^clean − out_u^corrupt) · ∂m/∂in_v |_corrupt

Faithfulness runs the clean input with every edge *outside* the circuit patched to the
corrupt run: each receiver reads ``in_v − Σ_{u→v ∉ C} (out_u^current − out_u^corrupt)``,
one forward pass. It reports ``(m_circuit − m_corrupt) / (m_clean − m_corrupt)``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from interp._batching import bind
from interp.architectures import architecture
from interp.errors import InterpError
from interp.metrics import Metric, Task, metric_per_pair, normalize

__all__ = ["Circuit", "EdgeScores", "FaithfulnessCurve", "Graph", "build_graph", "corrupt_outputs", "node_component",
    "discover_circuit", "edge_attribution", "edge_mask", "edge_order", "edge_rows", "faithfulness_curve",
    "patched_edges_logits", "patched_edges_metric"]


@dataclass
class Graph:
    """Node and edge bookkeeping of one model."""

    upstream: list[str]
    up_layer: list[float]
    """Layer of each upstream node (input = -1; an MLP sits after its layer's heads: l + 0.5)."""
    receivers: list[str]
    recv_layer: list[float]
    recv_input: list[str]
    """``q``, ``k``, ``v``, ``mlp`` or ``logits``."""
    valid: Tensor
    """``[receiver, upstream]`` bool: the edge exists."""


def build_graph(model) -> Graph:
    n, h = model.cfg.n_layers, model.cfg.n_heads
    kv = model.cfg.n_key_value_heads or h
    up, up_layer = ["input"], [-1.0]
    recv, recv_layer, recv_input = [], [], []
    for l in range(n):
        up += [f"L{l}H{i}" for i in range(h)] + [f"MLP{l}"]
        up_layer += [float(l)] * h + [l + 0.5]
        kv_name = "H" if kv == h else "KV"
        recv += ([f"L{l}H{i}" for i in range(h)] + [f"L{l}{kv_name}{j}" for j in range(kv)] * 2 + [f"MLP{l}"])
        recv_layer += [float(l)] * (h + 2 * kv) + [l + 0.5]
        recv_input += ["q"] * h + ["k"] * kv + ["v"] * kv + ["mlp"]
    recv.append("logits")
    recv_layer.append(float(n))
    recv_input.append("logits")
    valid = torch.tensor(recv_layer)[:, None] > torch.tensor(up_layer)[None, :]
    return Graph(up, up_layer, recv, recv_layer, recv_input, valid)


@dataclass
class EdgeScores:
    graph: Graph
    scores: Tensor
    """``[receiver, upstream]`` EAP score (0 where no edge)."""
    clean_baseline: float
    corrupt_baseline: float
    seconds: float


@torch.no_grad()
def _upstream_outputs(model, cache) -> Tensor:
    """``[upstream, batch, pos, d_model]``: what each upstream node wrote."""
    outs = [cache["blocks.0.hook_resid_pre"]]
    W_O = model.W_O  # the bridge stacks every block's weights on each access: once, not per layer
    post = _post_gains(model)
    for l in range(model.cfg.n_layers):
        z = cache[f"blocks.{l}.attn.hook_z"]
        out = torch.einsum("bphd,hdm->hbpm", z, W_O[l])
        if post is not None:
            out = out * (post[l] / cache[f"blocks.{l}.ln1_post.hook_scale"])
        outs += list(out.unbind(0))
        outs.append(cache[f"blocks.{l}.hook_mlp_out"])
    return torch.stack(outs)


def _post_gains(model) -> Tensor | None:
    """``[layer, d_model]``: the post-attention norm's gains on a model with sandwich norms (Gemma), else
    None. There a head writes ``g ⊙ z_h W_O^h / s`` with ``s`` the norm's scale in the same run, so the
    heads' writes still sum to the attention block's output in every run, patched or not."""
    if "ln1_post" not in architecture(model).post_norms:
        return None
    from interp.circuits.lens import norm_gain

    return torch.stack([norm_gain(model.blocks[l].ln1_post) for l in range(model.cfg.n_layers)])


def _up_hooks(n_layers: int, post_norm: bool = False) -> list[str]:
    return (["blocks.0.hook_resid_pre"] + [f"blocks.{l}.attn.hook_z" for l in range(n_layers)]
            + [f"blocks.{l}.hook_mlp_out" for l in range(n_layers)]
            + ([f"blocks.{l}.ln1_post.hook_scale" for l in range(n_layers)] if post_norm else []))


class _SplitInputs:
    """Turn on per-head q/k/v input forks for the duration, restoring the flags."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        cfg = self.model.cfg
        self.saved = (bool(getattr(cfg, "use_split_qkv_input", False)), bool(getattr(cfg, "use_attn_in", False)))
        if self.saved[1]:
            self.model.set_use_attn_in(False)
        self.model.set_use_split_qkv_input(True)

    def __exit__(self, *exc):
        self.model.set_use_split_qkv_input(self.saved[0])
        if self.saved[1]:
            self.model.set_use_attn_in(True)


def _receiver_hooks(n_layers: int) -> list[str]:
    names = []
    for l in range(n_layers):
        names += [f"blocks.{l}.attn.hook_{x}_input" for x in ("q", "k", "v")] + [f"blocks.{l}.ln2.hook_in"]
    return names + ["ln_final.hook_in"]


def edge_attribution(model, task: Task, metric: Metric = "logit_diff") -> EdgeScores:
    """EAP scores of every edge, denoising: clean values into the corrupt run."""
    t0 = time.perf_counter()
    graph = build_graph(model)
    n = model.cfg.n_layers
    ups = set(_up_hooks(n, _post_gains(model) is not None))
    with torch.no_grad():
        clean_logits, clean = model.run_with_cache(task.clean, names_filter=lambda x: x in ups)
        m_clean = metric_per_pair(clean_logits[:, -1], task.answer, task.wrong, metric).mean().item()
    kept: dict[str, Tensor] = {}

    def fork(name):
        def hook(x, *, hook):
            y = x.clone() if x.requires_grad else x.detach().clone().requires_grad_(True)
            kept[name] = y  # a fresh tensor: its gradient is this receiver's path alone
            return y
        return hook

    up_cache: dict[str, Tensor] = {}

    def store(name):
        def hook(x, *, hook):
            up_cache[name] = x.detach()
            return x
        return hook

    recv_names = _receiver_hooks(n)
    with _SplitInputs(model), torch.enable_grad():
        fwd = [(nm, store(nm)) for nm in ups] + [(nm, fork(nm)) for nm in recv_names]
        logits = model.run_with_hooks(task.corrupt, fwd_hooks=fwd)
        m = metric_per_pair(logits[:, -1], task.answer, task.wrong, metric).mean()
        grads = dict(zip(recv_names, torch.autograd.grad(m, [kept[x] for x in recv_names], allow_unused=True)))
    delta = (_upstream_outputs(model, clean) - _upstream_outputs(model, up_cache)).flatten(1)  # up, b·p·d
    rows = []
    for l in range(n):
        for x in ("q", "k", "v"):
            g = grads[f"blocks.{l}.attn.hook_{x}_input"]  # batch pos head d_model
            rows += list(g.permute(2, 0, 1, 3).flatten(1).unbind(0))
        rows.append(grads[f"blocks.{l}.ln2.hook_in"].flatten())
    rows.append(grads["ln_final.hook_in"].flatten())
    with torch.no_grad():
        scores = (torch.stack(rows) @ delta.T).float().cpu() * graph.valid
    return EdgeScores(graph, scores, m_clean, m.item(), time.perf_counter() - t0)


def patched_edges_metric(model, task: Task, keep: Tensor, metric: Metric = "logit_diff",
                         corrupt_out: Tensor | None = None) -> float:
    """Metric of the clean run with every edge where ``keep`` is False patched to corrupt."""
    logits = patched_edges_logits(model, task, keep, corrupt_out)
    return metric_per_pair(logits, task.answer, task.wrong, metric).mean().item()


def corrupt_outputs(model, task: Task) -> Tensor:
    """``[upstream, batch, pos, d_model]``: what each upstream node writes on the corrupt prompts
    (one forward), for :func:`patched_edges_logits` to reuse across several masks."""
    ups = set(_up_hooks(model.cfg.n_layers, _post_gains(model) is not None))
    with torch.no_grad():
        _, corrupt = model.run_with_cache(task.corrupt, names_filter=lambda x: x in ups)
    return _upstream_outputs(model, corrupt)


def patched_edges_logits(model, task: Task, keep: Tensor, corrupt_out: Tensor | None = None) -> Tensor:
    """Last-position logits ``[pair, d_vocab]`` of the clean run with every edge where ``keep`` is
    False patched to corrupt (``corrupt_out``: :func:`corrupt_outputs` of ``task``, computed here
    when not given)."""
    graph = build_graph(model)
    if keep.shape != graph.valid.shape:
        raise InterpError(f"edge mask has shape {tuple(keep.shape)}, the graph {tuple(graph.valid.shape)}")
    n = model.cfg.n_layers
    ups = set(_up_hooks(n, _post_gains(model) is not None))
    if corrupt_out is None:
        corrupt_out = corrupt_outputs(model, task)  # up batch pos d
    drop = (graph.valid & ~keep.bool()).float().to(corrupt_out.device)  # receiver, upstream
    delta = torch.zeros_like(corrupt_out)  # current − corrupt, filled as the run proceeds
    cache: dict[str, Tensor] = {}
    recv_index = {}
    r = 0
    h, kv = model.cfg.n_heads, model.cfg.n_key_value_heads or model.cfg.n_heads
    for l in range(n):
        for x, count in (("q", h), ("k", kv), ("v", kv)):
            recv_index[f"blocks.{l}.attn.hook_{x}_input"] = (r, r + count)
            r += count
        recv_index[f"blocks.{l}.ln2.hook_in"] = (r, r + 1)
        r += 1
    recv_index["ln_final.hook_in"] = (r, r + 1)
    W_O = model.W_O  # stacked once (each access stacks every block's weights)
    post = _post_gains(model)

    def record(x, *, hook, name):
        cache[name] = x
        if name == "blocks.0.hook_resid_pre":
            delta[0] = x - corrupt_out[0]
        elif name.endswith("hook_z") or name.endswith("ln1_post.hook_scale"):
            l = int(name.split(".")[1])
            if post is not None and name.endswith("hook_z"):
                return x  # the heads' writes need this run's post-norm scale, which comes next
            z = cache[f"blocks.{l}.attn.hook_z"]
            out = torch.einsum("bphd,hdm->hbpm", z, W_O[l])
            if post is not None:
                out = out * (post[l] / x)
            start = 1 + l * (h + 1)
            delta[start:start + h] = out - corrupt_out[start:start + h]
        else:
            l = int(name.split(".")[1])
            delta[(l + 1) * (h + 1)] = x - corrupt_out[(l + 1) * (h + 1)]
        return x

    def patch_input(x, *, hook, name):
        a, b = recv_index[name]
        corr = torch.einsum("ru,ubpd->bprd", drop[a:b], delta)  # batch pos receiver d
        return x - (corr if x.dim() == 4 else corr[:, :, 0])

    fwd = [(nm, bind(record, name=nm)) for nm in ups] + [(nm, bind(patch_input, name=nm)) for nm in recv_index]
    with _SplitInputs(model), torch.no_grad():
        logits = model.run_with_hooks(task.clean, fwd_hooks=fwd)
    return logits[:, -1]


def edge_order(graph: Graph, scores: Tensor) -> Tensor:
    """Flat indices of the graph's edges, strongest |score| first (edges that do not exist last)."""
    return scores.abs().flatten().masked_fill(~graph.valid.flatten(), -1.0).argsort(descending=True)


def edge_mask(graph: Graph, indices: Tensor) -> Tensor:
    """``[receiver, upstream]`` bool: True at the flat ``indices``."""
    keep = torch.zeros_like(graph.valid)
    keep.view(-1)[indices] = True
    return keep


def edge_rows(graph: Graph, scores: Tensor, indices: Tensor) -> list[dict]:
    """``{"src", "dst", "input", "score"}`` for each flat edge index."""
    rows = []
    for i in indices.tolist():
        r, u = divmod(i, len(graph.upstream))
        rows.append({"src": graph.upstream[u], "dst": graph.receivers[r], "input": graph.recv_input[r],
                     "score": float(scores[r, u])})
    return rows


def node_component(node: str, n_heads: int, n_kv: int | None = None) -> dict | None:
    """The model component a graph node names: ``L3H2`` a query head, ``L3KV1`` a K/V group (its
    first query head), ``MLP3`` an MLP; ``{"node": "head"|"mlp", "layer", "head"?}``, None for
    ``input`` and ``logits``."""
    if m := re.fullmatch(r"L(\d+)H(\d+)", node):
        return {"node": "head", "layer": int(m[1]), "head": int(m[2])}
    if m := re.fullmatch(r"L(\d+)KV(\d+)", node):
        return {"node": "head", "layer": int(m[1]), "head": int(m[2]) * (n_heads // (n_kv or n_heads))}
    if m := re.fullmatch(r"MLP(\d+)", node):
        return {"node": "mlp", "layer": int(m[1])}
    return None


@dataclass
class Circuit:
    """The top edges by |EAP score| and how much of the behaviour they carry."""

    nodes: list[str]
    edges: list[dict]
    """``{"src", "dst", "input", "score"}``, strongest first."""
    n_edges_total: int
    clean_baseline: float
    corrupt_baseline: float
    circuit_metric: float
    """Metric of the clean run with every other edge patched to corrupt."""
    faithfulness: float
    """``(circuit_metric − m_corrupt) / (m_clean − m_corrupt)``."""
    seconds: float
    keep: Tensor = field(repr=False, default=None)

    def figure(self, n_layers: int):
        """This result as a plotly figure (:func:`interp.figures.circuit_figure`)."""
        from interp.figures import circuit_figure

        return circuit_figure(self, n_layers)


def discover_circuit(model, task: Task, n_edges: int = 200, metric: Metric = "logit_diff",
                     scores: EdgeScores | None = None) -> Circuit:
    """EAP (or the given ``scores``), keep the ``n_edges`` strongest edges, then measure the
    circuit's faithfulness."""
    t0 = time.perf_counter()
    eap = scores or edge_attribution(model, task, metric)
    g = eap.graph
    total = int(g.valid.sum())
    if n_edges < 1:
        raise InterpError(f"a circuit needs at least 1 edge (asked for {n_edges})")
    top = edge_order(g, eap.scores)[:min(n_edges, total)]
    keep = edge_mask(g, top)
    m = patched_edges_metric(model, task, keep, metric)
    faith = normalize(torch.tensor(m), eap.clean_baseline, eap.corrupt_baseline).item()
    edges = edge_rows(g, eap.scores, top)
    nodes = {e["src"] for e in edges} | {e["dst"] for e in edges}
    order = {name: i for i, name in enumerate(g.upstream + g.receivers)}
    return Circuit(sorted(nodes, key=lambda x: order.get(x, 1 << 30)), edges, total, eap.clean_baseline,
                   eap.corrupt_baseline, m, faith, time.perf_counter() - t0, keep)


@dataclass
class FaithfulnessCurve:
    """How much of the behaviour the top-k edges carry, for several k."""

    sizes: list[int]
    faithfulness: list[float]
    """``(m_circuit − m_corrupt) / (m_clean − m_corrupt)`` at each size."""
    circuit_metric: list[float]
    n_edges_total: int
    clean_baseline: float
    corrupt_baseline: float
    seconds: float

    def figure(self):
        """This curve as a plotly figure (:func:`interp.figures.faithfulness_figure`)."""
        from interp.figures import faithfulness_figure

        return faithfulness_figure(self)


def faithfulness_curve(model, task: Task, sizes: Sequence[int] = (50, 100, 200, 500, 1000, 2000, 5000),
                       metric: Metric = "logit_diff", scores: EdgeScores | None = None) -> FaithfulnessCurve:
    """Faithfulness of the top-k edges by |EAP score| for each k in ``sizes`` (one EAP pass, reused
    from ``scores`` when given; one patched forward per size)."""
    t0 = time.perf_counter()
    if not sizes or min(sizes) < 1:
        raise InterpError(f"circuit sizes must be at least 1 edge (got {list(sizes)})")
    eap = scores or edge_attribution(model, task, metric)
    total = int(eap.graph.valid.sum())
    order = edge_order(eap.graph, eap.scores)
    ks = sorted({min(int(k), total) for k in sizes})
    corrupt_out = corrupt_outputs(model, task)  # one corrupt forward for every size
    ms = [patched_edges_metric(model, task, edge_mask(eap.graph, order[:k]), metric, corrupt_out) for k in ks]
    faith = normalize(torch.tensor(ms), eap.clean_baseline, eap.corrupt_baseline).tolist()
    return FaithfulnessCurve(ks, faith, ms, total, eap.clean_baseline, eap.corrupt_baseline,
                             time.perf_counter() - t0)
