"""Attribution patching (AtP): every site's patching effect from one backward pass.

Nanda 2023; Syed et al. 2023. Linearise the metric around the base run: patching
activation ``a`` from ``a_base`` to ``a_src`` changes the metric by about

    Δm ≈ (a_src - a_base) · ∂m/∂a |_base

One source forward, one base forward and one backward give the gradients and
activations of every site at once; each cell's estimate is that dot product over the
cell's entries. Results are :class:`~interp.circuits.patching.PatchResult` holding
``m_base + Δm``, directly comparable with exact sweeps.

Known failure modes (Kramár et al. 2024, "AtP*"):

* **Saturated attention.** A q or k patch can move a softmax far from the linear
  regime, and the linear estimate then misses the effect (often by a lot). With
  ``qk_exact=True`` (the default), q and k sites use AtP*'s fix: the patched attention
  scores are recomputed and pushed through the softmax exactly, and only the
  pattern's effect on the metric is linearised. Models with attention soft-capping
  are handled; ALiBi and other score biases are not.
* **Residual stream and MLP0.** Patching ``resid_pre`` or early MLPs changes the
  token identity the rest of the network reads, which is far from linear. AtP
  correlates poorly with exact patching there; check those sites exactly
  (:func:`interp.circuits.patching.patch_sweep` is cheap for them). :func:`agreement` reports
  the Pearson r and top-k overlap per site, so you can see where it holds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.architectures import sliding_windows
from interp.errors import InterpError
from interp._batching import LAST_POSITION
from interp.metrics import Metric, Task, baselines, metric_per_pair
from interp.circuits.patching import SITES, Direction, PatchResult, get_site

__all__ = ["Agreement", "agreement", "attribution_sweep"]

_BASE_HOOKS = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
               "z": "attn.hook_z", "q": "attn.hook_q", "k": "attn.hook_k", "v": "attn.hook_v",
               "pattern": "attn.hook_pattern"}


def attribution_sweep(model, task: Task, sites: list[str] | None = None,
                      direction: Direction = "denoise", metric: Metric = "logit_diff",
                      qk_exact: bool = True) -> dict[str, PatchResult]:
    """AtP estimates for every cell of each site (default: all sites), one backward in all."""
    sites = list(SITES) if sites is None else sites
    specs = {s: get_site(s) for s in sites}
    base_tokens, src_tokens = task.runs(direction)
    t0 = time.perf_counter()
    n = model.cfg.n_layers
    rotary = model.cfg.positional_embedding_type == "rotary"
    hooks = {spec.hook for spec in specs.values()}
    exact_qk = qk_exact and any(s.split("_")[0] in ("q", "k") for s in sites)
    if exact_qk:
        hooks |= {"attn.hook_pattern", "attn.hook_rot_q" if rotary else "attn.hook_q",
                  "attn.hook_rot_k" if rotary else "attn.hook_k", "attn.hook_attn_scores"}
    names = [f"blocks.{l}.{h}" for l in range(n) for h in sorted(hooks)]
    wanted = set(names)

    with torch.no_grad():
        src_logits, src = model.run_with_cache(src_tokens, names_filter=lambda x: x in wanted)
        src_metric = metric_per_pair(src_logits[:, -1], task.answer, task.wrong, metric).mean().item()
    base: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(x, *, hook):
            if not x.requires_grad:  # parameters frozen by the user: start the graph here
                x = x.detach().requires_grad_(True)
            base[name] = x
            return x
        return hook

    fwd = [(name, keep(name)) for name in names] + [LAST_POSITION]
    with torch.enable_grad():
        logits = model.run_with_hooks(base_tokens, fwd_hooks=fwd)[:, -1]
        m = metric_per_pair(logits, task.answer, task.wrong, metric).mean()
        grads = dict(zip(names, torch.autograd.grad(m, [base[x] for x in names], allow_unused=True)))
    base_metric = m.item()
    base = {k: v.detach() for k, v in base.items()}

    results = {}
    for site, spec in specs.items():
        per_layer = []
        for l in range(n):
            name = f"blocks.{l}.{spec.hook}"
            grad = grads[name] if grads[name] is not None else torch.zeros_like(base[name])
            if exact_qk and site.split("_")[0] in ("q", "k"):
                per_layer.append(_qk_exact(model, site, l, src, base, grads, rotary))
            else:
                per_layer.append(_reduce(spec, (src[name] - base[name]) * grad))
        values = base_metric + torch.stack(per_layer).float().cpu()
        clean_m, corrupt_m = baselines(direction, base_metric, src_metric)
        results[site] = PatchResult(values, spec.axes, site, direction, metric, "attribution", clean_m,
                                    corrupt_m, task.clean_tokens, task.corrupt_tokens, task.n_pairs,
                                    0.0, {"qk_exact": bool(exact_qk and site.split("_")[0] in ("q", "k"))})
    seconds = time.perf_counter() - t0
    for r in results.values():
        r.seconds = seconds
    return results


def _reduce(spec, prod: Tensor) -> Tensor:
    """Sum a per-entry product over everything but the cell axes (and the pairs)."""
    if spec.pattern:  # batch head query key
        by_pos = prod.sum((0, 3)).transpose(0, 1)  # query(pos) head
    elif prod.dim() == 4:  # batch pos head d_head
        by_pos = prod.sum((0, 3))
    else:  # batch pos d_model
        return prod.sum((0, 2))
    return by_pos if "pos" in spec.axes else by_pos.sum(0)


def _qk_exact(model, site: str, layer: int, src, base, grads, rotary: bool) -> Tensor:
    """AtP*: exact softmax for q/k patches, linear only from the pattern onward."""
    pre = f"blocks.{layer}.attn."
    q_name, k_name = pre + ("hook_rot_q" if rotary else "hook_q"), pre + ("hook_rot_k" if rotary else "hook_k")
    q_base, k_base = base[q_name], base[k_name]  # batch pos head d_head
    pattern, g = base[pre + "hook_pattern"], grads[pre + "hook_pattern"]  # batch head query key
    if g is None:
        g = torch.zeros_like(pattern)
    group = q_base.shape[2] // k_base.shape[2]
    config = getattr(model.original_model, "config", None)
    scale = 1.0 / math.sqrt(getattr(config, "query_pre_attn_scalar", None) or q_base.shape[-1])
    cap = getattr(model.cfg, "attn_scores_soft_cap", -1.0) or -1.0

    def capped(s: Tensor) -> Tensor:
        return cap * torch.tanh(s / cap) if cap > 0 else s

    n_pos = pattern.shape[-1]
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=pattern.device).tril()
    window = sliding_windows(model)[layer]
    if window:  # a sliding-window layer (Gemma 3): a query sees only its last `window` keys
        causal = causal.triu(-(window - 1))
    pg = (pattern * g).sum(-1)  # batch head query: Σ_t p_t g_t
    if site.startswith("q"):
        # A patched query changes its whole row of scores: recompute that row's softmax.
        k_full = k_base.repeat_interleave(group, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", src[q_name], k_full) * scale
        new = capped(scores).masked_fill(~causal, float("-inf")).softmax(-1)
        effect = ((new * g).sum(-1) - pg).sum(0).transpose(0, 1)  # query(pos) head
        return effect if site == "q" else effect.sum(0)
    q = q_base  # batch query head d_head
    if site == "k_all":
        # Every key of a KV head patched at once: recompute its query heads' softmax.
        scores = torch.einsum("bqhd,bkhd->bhqk", q, src[k_name].repeat_interleave(group, dim=2)) * scale
        new = capped(scores).masked_fill(~causal, float("-inf")).softmax(-1)
        per_qhead = ((new * g).sum(-1) - pg).sum((0, 2))  # head
        return per_qhead.view(-1, group).sum(1)
    # A patched key at position s changes column s of every row q >= s of its query heads.
    old = capped(torch.einsum("bqhd,bkhd->bhqk", q, k_base.repeat_interleave(group, dim=2)) * scale)
    new = capped(torch.einsum("bqhd,bkhd->bhqk", q, src[k_name].repeat_interleave(group, dim=2)) * scale)
    dz = (new - old).masked_fill(~causal, 0.0)  # batch head query key(s)
    p_s = pattern
    # Softmax with one logit moved by dz: p'_s = p_s e^dz / r, p'_t = p_t / r,
    # r = 1 - p_s + p_s e^dz, computed in log space.
    log_r = torch.logaddexp(torch.log1p(-p_s.clamp(max=1 - 1e-7)), torch.log(p_s.clamp_min(1e-30)) + dz)
    inv_r = torch.exp(-log_r)
    p_new_s = torch.exp(torch.log(p_s.clamp_min(1e-30)) + dz - log_r)
    new_pg = (pg[..., None] - p_s * g) * inv_r + p_new_s * g
    diff = (new_pg - pg[..., None]).masked_fill(~causal, 0.0)  # batch head query key(s)
    per_qhead = diff.sum((0, 2))  # head key(s)
    return per_qhead.view(-1, group, n_pos).sum(1).transpose(0, 1)  # key(pos) kv_head


@dataclass
class Agreement:
    """How well an estimate ranks and sizes cells compared with exact patching."""

    site: str
    pearson_r: float
    top_k: int
    top_k_overlap: float
    """Fraction of the exact top-k cells (by |effect|) that the estimate's top-k also holds."""


def agreement(exact: PatchResult, estimate: PatchResult, k: int = 10) -> Agreement:
    """Pearson r of effects and top-k overlap of |effects|, exact vs estimate."""
    if exact.values.shape != estimate.values.shape:
        raise InterpError(f"cannot compare {exact.site} {tuple(exact.values.shape)} with "
                          f"{estimate.site} {tuple(estimate.values.shape)}")
    base = exact.corrupt_baseline if exact.direction == "denoise" else exact.clean_baseline
    a = (exact.values - base).flatten().double()
    b = (estimate.values - base).flatten().double()
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item() if a.std() > 0 and b.std() > 0 else float("nan")
    k = min(k, a.numel())
    top_a = set(a.abs().topk(k).indices.tolist())
    top_b = set(b.abs().topk(k).indices.tolist())
    return Agreement(exact.site, r, k, len(top_a & top_b) / k)
