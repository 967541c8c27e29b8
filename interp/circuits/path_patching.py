"""Path patching: a set of sender heads' effect through one path only.

Wang et al. 2022 (IOI), §3.1; Goldowsky-Dill et al. 2023. With base run ``b``
(corrupt when denoising) and source run ``s`` (clean when denoising):

1. Run the base input with the sender heads' outputs (``hook_z``) set to the source
   run and *every other attention head frozen* to the base run. MLPs recompute
   (``freeze_mlps=True`` freezes them too, leaving only the direct head-to-head path).
2. Receivers = ``"logits"``: the metric of run 1 is the answer (the path
   senders → residual → logits, through MLPs unless frozen).
   Receivers = heads: keep the receivers' q, k or v from run 1, then run the base
   input again with only those receiver inputs patched, and read the metric.

Sender sets become rows of one batch: a sweep over every sender head costs two
batched forwards, not two forwards per head.
"""

from __future__ import annotations

import time
from typing import Literal, Sequence

import torch
from torch import Tensor

from interp.errors import InterpError, check_index
from interp._batching import LAST_POSITION, bind
from interp.metrics import Metric, Task, baselines, metric_per_pair
from interp.circuits.patching import Direction, PatchResult

__all__ = ["path_patch", "path_patch_sweep"]

Head = tuple[int, int]
ReceiverInput = Literal["q", "k", "v"]


def path_patch(model, task: Task, senders: Sequence[Head], receivers: Sequence[Head] | str = "logits",
               receiver_input: ReceiverInput = "q", direction: Direction = "denoise",
               metric: Metric = "logit_diff", freeze_mlps: bool = False) -> float:
    """Metric of the base run with ``senders`` patched through the path to ``receivers``."""
    return _run(model, task, [list(senders)], receivers, receiver_input, direction, metric,
                freeze_mlps)[0][0].item()


def path_patch_sweep(model, task: Task, receivers: Sequence[Head] | str = "logits",
                     receiver_input: ReceiverInput = "q", direction: Direction = "denoise",
                     metric: Metric = "logit_diff", freeze_mlps: bool = False,
                     rows_per_pass: int = 64) -> PatchResult:
    """Path-patch every single head as the sender; NaN where no path exists (sender at or
    after the first receiver's layer)."""
    t0 = time.perf_counter()
    last = model.cfg.n_layers if receivers == "logits" else min(l for l, _ in receivers)
    senders = [(l, h) for l in range(last) for h in range(model.cfg.n_heads)]
    values = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
    baselines = None
    for start in range(0, len(senders), rows_per_pass):
        chunk = senders[start:start + rows_per_pass]
        vals, baselines = _run(model, task, [[s] for s in chunk], receivers, receiver_input,
                               direction, metric, freeze_mlps)
        for (l, h), v in zip(chunk, vals.tolist()):
            values[l, h] = v
    clean_m, corrupt_m = baselines
    return PatchResult(values, ("layer", "head"), f"path:{_describe(receivers, receiver_input)}",
                       direction, metric, "path", clean_m, corrupt_m, task.clean_tokens,
                       task.corrupt_tokens, task.n_pairs, time.perf_counter() - t0,
                       {"freeze_mlps": freeze_mlps})


def _describe(receivers, receiver_input) -> str:
    if receivers == "logits":
        return "logits"
    return ",".join(f"L{l}H{h}" for l, h in receivers) + f".{receiver_input}"


def _check(model, senders: list[list[Head]], receivers, receiver_input) -> None:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    for group in senders:
        for l, h in group:
            check_index(l, n_layers, "sender layer")
            check_index(h, n_heads, "sender head")
    if receivers == "logits":
        return
    if isinstance(receivers, str):
        raise InterpError(f"receivers must be 'logits' or a list of (layer, head), not {receivers!r}")
    if receiver_input not in ("q", "k", "v"):
        raise InterpError(f"receiver input must be q, k or v, not {receiver_input!r}")
    kv = model.cfg.n_key_value_heads or n_heads
    for l, h in receivers:
        check_index(l, n_layers, "receiver layer")
        check_index(h, kv if receiver_input in ("k", "v") else n_heads,
                    f"receiver {'KV ' if receiver_input in ('k', 'v') else ''}head")
    first = min(l for l, _ in receivers)
    late = [f"L{l}H{h}" for g in senders for l, h in g if l >= first]
    if late and len(senders) == 1:
        raise InterpError(f"senders {late} are not before the first receiver layer {first}: no path")


def _run(model, task: Task, sender_sets: list[list[Head]], receivers, receiver_input, direction,
         metric, freeze_mlps) -> tuple[Tensor, tuple[float, float]]:
    _check(model, sender_sets, receivers, receiver_input)
    base_tokens, src_tokens = task.runs(direction)
    n, n_pairs, rows = model.cfg.n_layers, task.n_pairs, len(sender_sets)
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(n)]
    mlp_names = [f"blocks.{l}.hook_mlp_out" for l in range(n)]
    z_set, base_set = set(z_names), set(z_names + mlp_names)
    with torch.no_grad():
        src_logits, src = model.run_with_cache(src_tokens, names_filter=lambda x: x in z_set)
        base_logits, base = model.run_with_cache(base_tokens, names_filter=lambda x: x in base_set)
    answer, wrong = task.answer.repeat(rows), task.wrong.repeat(rows)
    m_src = metric_per_pair(src_logits[:, -1], task.answer, task.wrong, metric).mean().item()
    m_base = metric_per_pair(base_logits[:, -1], task.answer, task.wrong, metric).mean().item()
    clean_and_corrupt = baselines(direction, m_base, m_src)
    tokens = base_tokens.repeat(rows, 1)  # row r*n_pairs + i: sender set r, pair i

    def freeze_z(x, *, hook, layer):
        x = base[f"blocks.{layer}.attn.hook_z"].repeat(rows, 1, 1, 1).clone()
        for r, group in enumerate(sender_sets):
            for l, h in group:
                if l == layer:
                    x[r * n_pairs:(r + 1) * n_pairs, :, h] = src[f"blocks.{l}.attn.hook_z"][:, :, h]
        return x

    hooks = [(z_names[l], bind(freeze_z, layer=l)) for l in range(n)]
    if freeze_mlps:
        hooks += [(mlp_names[l], bind(lambda x, *, hook, layer: base[mlp_names[layer]].repeat(rows, 1, 1), layer=l))
                  for l in range(n)]
    hooks.append(LAST_POSITION)
    if receivers == "logits":
        with torch.no_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
        return _mean_rows(logits, answer, wrong, metric, rows, n_pairs), clean_and_corrupt

    recv_names = sorted({f"blocks.{l}.attn.hook_{receiver_input}" for l, _ in receivers})
    kept: dict[str, Tensor] = {}

    def keep(x, *, hook, name):
        kept[name] = x.detach().clone()
        return x

    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=hooks + [(nm, bind(keep, name=nm)) for nm in recv_names])

    def patch_receivers(x, *, hook, name):
        layer = int(name.split(".")[1])
        x = x.clone()
        for l, h in receivers:
            if l == layer:
                x[:, :, h] = kept[name][:, :, h]
        return x

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(nm, bind(patch_receivers, name=nm)) for nm in recv_names]
                                      + [LAST_POSITION])[:, -1]
    return _mean_rows(logits, answer, wrong, metric, rows, n_pairs), clean_and_corrupt


def _mean_rows(logits, answer, wrong, metric, rows, n_pairs) -> Tensor:
    return metric_per_pair(logits, answer, wrong, metric).float().cpu().view(rows, n_pairs).mean(1)

