"""Feature steering: clamp or add one SAE feature while the model generates.

The residual at the SAE's hook is split into the SAE's reconstruction and its error,

    x = x̂ + ε,   x̂ = b_dec + Σ_j f_j(x) W_dec,j,   ε = x − x̂,

and the chosen feature's coefficient is set, keeping ε and every other feature:

- ``clamp``: f_j ← v, so x' = x + (v − f_j(x)) W_dec,j;
- ``add``:   x' = x + v W_dec,j, whatever f_j(x) was;

with v = ``scale`` × the feature's maximum activation in a store (so the feature's term
f_j W_dec,j has norm ``scale`` × max × ‖W_dec,j‖, ``scale`` times the largest it reached
on the corpus). Keeping ε is what makes clamping a feature at its own value a no-op: only
the feature moves, not the part of x the SAE fails to explain (Templeton et al. 2024,
"Scaling Monosemanticity", §feature steering).

``positions`` restricts the edit to those prompt positions (generated tokens are then
left alone, and generation runs without the KV cache, since the hook must see absolute
positions); by default every position, generated ones included, is steered.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError

__all__ = ["FeatureSteering", "steer_feature", "steering_hook", "steering_hooks"]

Mode = Literal["clamp", "add"]
MAX_JOINT_BATCH = 32
"""Prompts up to half this many generate unsteered and steered in one batch."""


def steering_hook(sae, feature: int, value: float, mode: Mode = "clamp", positions: Sequence[int] | None = None,
                  rows: Callable[[], Tensor | None] | None = None):
    """A ``(x, *, hook)`` function that edits feature ``feature`` of ``x [batch pos d_in]`` as above.
    ``rows()``, when given, returns a boolean mask of the batch rows to edit (None: every row)."""
    if mode not in ("clamp", "add"):
        raise InterpError(f"steering mode {mode!r}: use clamp or add")
    if not math.isfinite(value):
        raise InterpError(f"the steering value must be finite, not {value!r}")
    w = (sae.W_dec[feature] / sae.input_scale).detach()  # in the input's units (a saved SAE has s = 1)

    def edit(x: Float[Tensor, "batch pos d_in"], *, hook=None):
        sel = slice(None) if positions is None else [p for p in positions if p < x.shape[1]]
        if positions is not None and not sel:
            return x
        xs = x[:, sel]
        if mode == "clamp":
            f_j = sae.encode(xs.to(sae.W_enc.dtype))[..., feature]
            delta = (value - f_j)[..., None] * w
        else:
            delta = (value * w).expand_as(xs)
        mask = rows() if rows is not None else None
        if mask is not None:
            delta = delta * mask.to(delta.dtype).view(-1, *[1] * (delta.dim() - 1))
        x = x.clone()
        x[:, sel] = xs + delta.to(x.dtype)
        return x

    return edit


def steering_hooks(sae, feature: int, value: float, mode: Mode = "clamp", positions: Sequence[int] | None = None,
                   rows: Callable[[], Tensor | None] | None = None) -> list[tuple[str, Callable]]:
    """``(hook, fn)`` pairs that steer the feature: for an SAE, :func:`steering_hook` at its hook; for a
    transcoder, the edit goes on the MLP's output path (``cfg.hook_out``), with f_j read at its input hook
    in the same forward pass: y' = y + (v − f_j(x)) W_dec,j (clamp) or y + v W_dec,j (add)."""
    if not sae.is_transcoder:
        return [(sae.cfg.hook_name, steering_hook(sae, feature, value, mode, positions, rows))]
    if mode not in ("clamp", "add"):
        raise InterpError(f"steering mode {mode!r}: use clamp or add")
    if not math.isfinite(value):
        raise InterpError(f"the steering value must be finite, not {value!r}")
    w = (sae.W_dec[feature] / sae.output_scale).detach()
    seen: dict[str, Tensor] = {}

    def read(x, *, hook=None):
        seen["x"] = x
        return x

    def edit(y, *, hook=None):
        sel = slice(None) if positions is None else [p for p in positions if p < y.shape[1]]
        if positions is not None and not sel:
            return y
        if mode == "clamp":
            f_j = sae.encode(seen["x"][:, sel].to(sae.W_enc.dtype))[..., feature]
            delta = (value - f_j)[..., None] * w
        else:
            delta = (value * w).expand_as(y[:, sel])
        mask = rows() if rows is not None else None
        if mask is not None:
            delta = delta * mask.to(delta.dtype).view(-1, *[1] * (delta.dim() - 1))
        y = y.clone()
        y[:, sel] = y[:, sel] + delta.to(y.dtype)
        return y

    return [(sae.cfg.hook_name, read), (sae.cfg.hook_out, edit)]


@dataclass
class FeatureSteering:
    feature: int
    hook: str
    mode: str
    scale: float
    max_activation: float
    value: float
    """The coefficient the feature is set to (clamp) or added with (add): scale × max_activation."""
    positions: list[int] | None
    prompts: list[str]
    tokens: list[list[str]]
    before: list[str]
    after: list[str]
    activation_before: list[list[float]]
    """``[prompt][position]``: the feature's activation on the prompt without steering."""
    activation_after: list[list[float]]
    """The SAE's encoding of the steered residual at the same positions."""
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def steer_feature(model, sae, feature: int, scale: float, prompts: Sequence[str], max_activation: float,
                  mode: Mode = "clamp", positions: Sequence[int] | None = None, max_new_tokens: int = 30,
                  greedy: bool = True, seed: int = 0) -> FeatureSteering:
    """Generations of ``prompts`` without and with the feature steered, and its activation before and after."""
    from interp.generation import generate
    from interp.tokens import str_tokens, to_tokens

    if not 0 <= feature < sae.cfg.d_sae:
        raise InterpError(f"feature {feature} is out of range: the SAE has {sae.cfg.d_sae} features (0-{sae.cfg.d_sae - 1})")
    if not math.isfinite(scale):
        raise InterpError(f"--scale must be a finite number, not {scale!r}")
    if not (math.isfinite(max_activation) and max_activation > 0):
        raise InterpError(f"the feature's maximum activation must be positive and finite, not {max_activation!r} "
                          "(a feature that never fired in the store: pass --max-act)")
    prompts = list(prompts)
    if not prompts:
        raise InterpError("give at least one --prompt")
    hook = sae.cfg.hook_name
    value = scale * max_activation
    if mode == "clamp" and value < 0:  # every architecture here (ReLU, TopK, BatchTopK, JumpReLU) is >= 0
        raise InterpError(f"clamping feature {feature} to {value:.4g} (--scale {scale:g}): this SAE's features are "
                          f"never negative, so no input gives that value; use a positive --scale, or --mode add "
                          "with a negative --scale to push against the feature's direction")
    if positions is not None:
        for p in prompts:
            n = to_tokens(model, p).shape[1]
            past = [q for q in positions if q >= n]
            if past:
                raise InterpError(f"--positions {past[0]} is past the end of the prompt {p!r}, which has {n} tokens "
                                  f"(positions 0-{n - 1})")
    edit = steering_hooks(sae, feature, value, mode, positions)
    t0 = time.perf_counter()
    kw = dict(mode="greedy" if greedy else "sample", seed=seed, use_cache=positions is None,
              batch_size=16 if positions is None else 1)
    n = len(prompts)
    if positions is None and 2 * n <= MAX_JOINT_BATCH:
        # Unsteered and steered copies of each prompt in one batch, the hook editing only the second:
        # one generation's time instead of two (the batch is what a CPU or GPU does best). Each copy
        # keeps its prompt's seed, so the texts equal two separate runs'.
        steered: dict[str, Tensor] = {}

        def on_batch(indices: list[int]) -> None:
            steered["rows"] = torch.tensor([i >= n for i in indices], device=model.cfg.device)

        joint = steering_hooks(sae, feature, value, mode, None, rows=lambda: steered.get("rows"))
        with model.hooks(fwd_hooks=joint):
            both = generate(model, prompts + prompts, max_new_tokens, **{**kw, "batch_size": 2 * n},
                            seeds=[seed + i for i in range(n)] * 2, on_batch=on_batch)
        before, after = both[:n], both[n:]
    else:
        before = generate(model, prompts, max_new_tokens, **kw)
        with model.hooks(fwd_hooks=edit):
            after = generate(model, prompts, max_new_tokens, **kw)
    toks, act_before, act_after = [], [], []
    for p in prompts:
        ids = to_tokens(model, p)
        seen: dict[str, Tensor] = {}

        def record(x, *, hook, key):
            seen[key] = sae.encode(x[0].to(sae.W_enc.dtype))[:, feature]
            return x

        model.run_with_hooks(ids, fwd_hooks=[(hook, lambda x, hook: record(x, hook=hook, key="before"))])
        before_p = seen["before"].float().cpu()
        if sae.is_transcoder:  # the edit is on the MLP's output: the feature's value there is set, not re-read
            after_p = before_p.clone()
            sel = slice(None) if positions is None else list(positions)
            after_p[sel] = value if mode == "clamp" else after_p[sel] + value
        else:
            model.run_with_hooks(ids, fwd_hooks=[*edit, (hook, lambda x, hook: record(x, hook=hook, key="after"))])
            after_p = seen["after"].float().cpu()
        toks.append(str_tokens(model, ids[0]))
        act_before.append(before_p.tolist())
        act_after.append(after_p.tolist())
    return FeatureSteering(feature, hook, mode, scale, max_activation, value,
                           None if positions is None else list(positions), prompts, toks, before, after,
                           act_before, act_after, time.perf_counter() - t0)
