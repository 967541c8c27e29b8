"""Exact activation patching, batched across patched cells.

A sweep patches one activation *cell* at a time (a layer and position, a head, ...)
from a source run into a base run and records the metric:

* ``denoise`` (default): base = corrupt prompt, source = clean activations;
* ``noise``: base = clean prompt, source = corrupt activations.

TransformerLens's ``patching`` module runs one full forward per cell. Here a single
forward serves a whole chunk of cells: the base rows run alone up to layer ``L``;
at ``blocks.L.hook_resid_pre`` one copy of the base rows is appended per cell of
layer ``L``, and the site's hook patches exactly those copies. Everything before
the patched layer is therefore computed once, cells become rows of one batch, and
only the last position is unembedded. Rows never interact in a transformer, so the
result equals the one-patch-per-forward loop (tests check both, and TransformerLens's
own functions).
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from interp._batching import bind, cells_per_pass, forward_with_cells, free_memory, is_oom
from interp.errors import InterpError
from interp.metrics import Metric, Task, baselines, metric_per_pair, normalize
from interp.progress import progress

__all__ = ["PatchResult", "SITES", "Site", "get_site", "grid_shape", "patch_sweep"]

Direction = Literal["denoise", "noise"]


@dataclass(frozen=True)
class Site:
    """A patchable activation and the grid of cells a sweep visits."""

    hook: str
    """Hook under ``blocks.{layer}.``."""
    axes: tuple[str, ...]
    """Cell grid axes; ``layer`` first. ``head`` counts KV heads for k/v (GQA)."""
    kv: bool = False
    pattern: bool = False
    """Activation laid out ``[batch head query key]``; ``pos`` is the query row."""


SITES: dict[str, Site] = {
    "resid_pre": Site("hook_resid_pre", ("layer", "pos")),
    "attn_out": Site("hook_attn_out", ("layer", "pos")),
    "mlp_out": Site("hook_mlp_out", ("layer", "pos")),
    "head_out": Site("attn.hook_z", ("layer", "pos", "head")),
    "head_out_all": Site("attn.hook_z", ("layer", "head")),
    "q": Site("attn.hook_q", ("layer", "pos", "head")),
    "k": Site("attn.hook_k", ("layer", "pos", "head"), kv=True),
    "v": Site("attn.hook_v", ("layer", "pos", "head"), kv=True),
    "q_all": Site("attn.hook_q", ("layer", "head")),
    "k_all": Site("attn.hook_k", ("layer", "head"), kv=True),
    "v_all": Site("attn.hook_v", ("layer", "head"), kv=True),
    "pattern": Site("attn.hook_pattern", ("layer", "pos", "head"), pattern=True),
    "pattern_all": Site("attn.hook_pattern", ("layer", "head"), pattern=True),
}


def get_site(name: str) -> Site:
    if name not in SITES:
        raise InterpError(f"unknown site {name!r}; choose one of {', '.join(SITES)}")
    return SITES[name]


@dataclass
class PatchResult:
    """A patching sweep: the metric of the base run with each cell patched."""

    values: Tensor
    """Metric (mean over prompt pairs) per cell, shaped like :attr:`axes`."""
    axes: tuple[str, ...]
    site: str
    direction: str
    metric: str
    method: str
    """``exact`` or ``attribution`` (a first-order estimate, see interp.circuits.attribution)."""
    clean_baseline: float
    """Metric of the unpatched clean run."""
    corrupt_baseline: float
    """Metric of the unpatched corrupt run."""
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    n_pairs: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def normalized(self) -> Tensor:
        """``(m - m_corrupt) / (m_clean - m_corrupt)`` per cell: 1 = clean behaviour."""
        return normalize(self.values, self.clean_baseline, self.corrupt_baseline)

    def figure(self, normalized: bool = True):
        """This result as a plotly figure (:func:`interp.figures.patch_figure`)."""
        from interp.figures import patch_figure

        return patch_figure(self, normalized)


def grid_shape(model, site: Site, n_pos: int) -> tuple[int, ...]:
    heads = model.cfg.n_key_value_heads if site.kv and model.cfg.n_key_value_heads else model.cfg.n_heads
    size = {"layer": model.cfg.n_layers, "pos": n_pos, "head": heads}
    return tuple(size[a] for a in site.axes)


def patch_sweep(model, task: Task, site: str = "resid_pre", direction: Direction = "denoise",
                metric: Metric = "logit_diff", memory_budget: float | None = None,
                max_cells_per_chunk: int | None = None) -> PatchResult:
    """Exact patching of every cell of ``site``, many cells per forward pass."""
    spec = get_site(site)
    base_tokens, src_tokens = task.runs(direction)
    t0 = time.perf_counter()
    names = {f"blocks.{l}.{spec.hook}" for l in range(model.cfg.n_layers)}
    with torch.no_grad():
        src_logits, src_cache = model.run_with_cache(src_tokens, names_filter=lambda n: n in names)
        src_metric = metric_per_pair(src_logits[:, -1], task.answer, task.wrong, metric).mean().item()
    del src_logits
    shape = grid_shape(model, spec, task.clean.shape[1])
    cells = torch.tensor(list(itertools.product(*map(range, shape))), dtype=torch.long)
    per_chunk = cells_per_pass(model, task.n_pairs, task.clean.shape[1], memory_budget)
    if max_cells_per_chunk:
        per_chunk = min(per_chunk, max_cells_per_chunk)
    values = torch.empty(len(cells))
    base_metric = None
    start, bar = 0, progress(total=len(cells), desc=f"patching {site}", unit="cell",
                             disable=len(cells) <= per_chunk, leave=False)
    while start < len(cells):
        chunk = cells[start:start + per_chunk]
        try:
            base, vals = _run_chunk(model, base_tokens, src_cache, spec, chunk, task, metric)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not is_oom(err) or per_chunk == 1:
                raise
            per_chunk = max(1, per_chunk // 2)
            print(f"interp: out of memory at {len(chunk)} cells per pass; retrying with {per_chunk}",
                  file=sys.stderr)
            free_memory(model)
            continue
        values[start:start + len(chunk)] = vals
        base_metric = base
        start += len(chunk)
        bar.update(len(chunk))
    bar.close()
    clean_m, corrupt_m = baselines(direction, base_metric, src_metric)
    return PatchResult(values.view(shape), spec.axes, site, direction, metric, "exact", clean_m,
                       corrupt_m, task.clean_tokens, task.corrupt_tokens, task.n_pairs,
                       time.perf_counter() - t0, {"cells_per_pass": per_chunk})


def _run_chunk(model, base_tokens: Int[Tensor, "pair pos"], src_cache, spec: Site,
               cells: Int[Tensor, "cell axis"], task: Task, metric: Metric) -> tuple[float, Tensor]:
    """One forward: the base rows plus one copy per cell, appended at the cell's layer."""
    n_pairs = base_tokens.shape[0]
    layers = cells[:, 0]
    rows = torch.arange(n_pairs, n_pairs * (len(cells) + 1))
    row_cell = rows // n_pairs - 1

    def patch(x: Tensor, *, hook, layer: int) -> Tensor:
        sel = layers[row_cell] == layer
        dev = x.device
        r, cell, pair = rows[sel].to(dev), cells[row_cell[sel]], (rows[sel] % n_pairs).to(dev)
        src = src_cache[f"blocks.{layer}.{spec.hook}"]
        if spec.axes == ("layer", "pos"):
            pos = cell[:, 1].to(dev)
            x[r, pos] = src[pair, pos]
        elif spec.axes == ("layer", "pos", "head"):
            pos, head = cell[:, 1].to(dev), cell[:, 2].to(dev)
            if spec.pattern:
                x[r, head, pos] = src[pair, head, pos]
            else:
                x[r, pos, head] = src[pair, pos, head]
        else:  # ("layer", "head"): every position
            head = cell[:, 1].to(dev)
            if spec.pattern:
                x[r, head] = src[pair, head]
            else:
                x[r, :, head] = src[pair, :, head]
        return x

    hooks = [(f"blocks.{layer}.{spec.hook}", bind(patch, layer=layer)) for layer in layers.unique().tolist()]
    logits = forward_with_cells(model, base_tokens, layers.tolist(), hooks)
    reps = logits.shape[0] // n_pairs
    per_row = metric_per_pair(logits, task.answer.repeat(reps), task.wrong.repeat(reps), metric)
    per_row = per_row.float().cpu().view(reps, n_pairs).mean(1)
    return per_row[0].item(), per_row[1:]

