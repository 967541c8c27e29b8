"""Logit lens and direct logit attribution (DLA).

Logit lens (nostalgebraist 2020): decode the residual stream after each layer with
the model's own final norm and unembedding, ``softmax(W_U · norm(resid) + b_U)``.
Entry 0 is the embedding (``blocks.0.hook_resid_pre``); entry ``l + 1`` is after
block ``l``; the last entry is the model's actual output.

DLA splits the final logit difference ``logit[answer] - logit[wrong]`` at the last
position into the residual stream's additive parts. With the final norm's *cached*
scale ``s`` (``ln_final.hook_scale``) held fixed, the norm is affine in the residual::

    norm(x) = g ⊙ center(x) / s + β        (center = x - mean(x) for LayerNorm, x for RMSNorm)

so with ``d = W_U[:, answer] - W_U[:, wrong]`` each part ``c`` contributes
``center(c) / s · (g ⊙ d)`` and the parts sum exactly to the logit difference:

* embeddings (token, and position where the model has learned positions),
* each attention head: ``z_h W_O^h`` from ``hook_z``, per query head (on Gemma, through the
  post-attention norm with its cached scale held fixed: ``g ⊙ z_h W_O^h / s``),
* each MLP (its output bias included),
* biases: every attention output bias ``b_O``, the final norm's ``β · d`` and ``b_U``.

We fold the norm's ``g`` (and centering) into the direction here instead of calling
``enable_compatibility_mode()``, which rewrites the weights in place and would
change the model other analyses share; the numbers are the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.architectures import architecture
from interp.tokens import single_token, str_tokens, to_tokens

__all__ = ["LogitAttribution", "LogitLens", "cache_stack", "direct_logit_attribution", "logit_lens", "norm_gain"]


@dataclass
class LogitLens:
    """What each layer's residual stream predicts at the last position."""

    tokens: list[str]
    layers: list[str]
    """Label of each lens entry: ``embed``, then ``L0`` ... ``L{n-1}`` (after that block)."""
    top_tokens: list[list[tuple[str, float]]]
    """``[layer][k]``: the top-k (token, probability) pairs."""
    answer: str | None
    answer_prob: list[float] | None
    """``[layer]``: probability of the answer token."""
    answer_rank: list[int] | None
    """``[layer]``: rank of the answer token (0 = top)."""
    seconds: float
    axes: tuple[str, ...] = ("layer",)

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.lens_figure`)."""
        from interp.figures import lens_figure

        return lens_figure(self)


def logit_lens(model, prompt: str, answer: str | None = None, top_k: int = 5) -> LogitLens:
    """Decode the last position's residual stream after every layer."""
    tokens = to_tokens(model, prompt)
    answer_id = single_token(model, answer) if answer is not None else None
    n = model.cfg.n_layers
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.hook_resid_post" for l in range(n)]
    t0 = time.perf_counter()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
        resid = torch.stack([cache[name][0, -1] for name in names])  # layer d_model
        probs = model.unembed(model.ln_final(resid[:, None]))[:, 0].float().softmax(-1)
    top = probs.topk(top_k, dim=-1)
    top_tokens = [[(model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(ps, ids)]
                  for ps, ids in zip(top.values, top.indices)]
    answer_prob = answer_rank = None
    if answer_id is not None:
        p = probs[:, answer_id]
        answer_prob = p.tolist()
        answer_rank = (probs > p[:, None]).sum(-1).tolist()
    return LogitLens(str_tokens(model, tokens[0]), ["embed"] + [f"L{l}" for l in range(n)],
                     top_tokens, answer, answer_prob, answer_rank, time.perf_counter() - t0)


@dataclass
class LogitAttribution:
    """The final logit difference split into the residual stream's parts."""

    tokens: list[str]
    answer: str
    wrong: str
    logit_diff: float
    """The model's own ``logit[answer] - logit[wrong]`` at the last position."""
    heads: Float[Tensor, "layer head"]
    """Direct contribution of each attention head (query heads for GQA)."""
    mlps: Float[Tensor, " layer"]
    """Direct contribution of each MLP, output bias included."""
    embed: float
    """Token embeddings (and positional embeddings where the model has them)."""
    biases: float
    """Attention output biases, the final norm's bias and the unembedding bias."""
    seconds: float
    axes: tuple[str, ...] = ("layer", "head")

    @property
    def total(self) -> float:
        """Sum of all parts; equals :attr:`logit_diff` up to float error."""
        return float(self.embed + self.biases + self.heads.sum() + self.mlps.sum())

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.dla_figure`)."""
        from interp.figures import dla_figure

        return dla_figure(self)


def direct_logit_attribution(model, prompt: str, answer: str, wrong: str) -> LogitAttribution:
    """DLA of ``logit[answer] - logit[wrong]`` at the last position of ``prompt``."""
    tokens = to_tokens(model, prompt)
    a, b = single_token(model, answer, "answer"), single_token(model, wrong, "wrong answer")
    n = model.cfg.n_layers
    t0 = time.perf_counter()
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=_dla_hooks(n))
        direction = model.W_U[:, a] - model.W_U[:, b]  # d_model
        gain, beta, centered = _final_norm_params(model)
        folded = direction * gain if gain is not None else direction
        scale = cache["ln_final.hook_scale"][0, -1]

        def project(x: Float[Tensor, "... d_model"]) -> Float[Tensor, "..."]:
            if centered:
                x = x - x.mean(-1, keepdim=True)
            return (x / scale) @ folded

        z = cache_stack(cache, "attn.hook_z", n)[:, 0, -1]  # layer head d_head
        head_out = torch.einsum("lhd,lhdm->lhm", z, model.W_O)
        if "ln1_post" in architecture(model).post_norms:
            # Gemma's sandwich norm sits between the heads' sum and the residual: with its cached
            # scale s_l held fixed it is linear, so head h adds g_l ⊙ z_h W_O^h / s_l.
            post = torch.stack([norm_gain(model.blocks[l].ln1_post) for l in range(n)])
            s_post = cache_stack(cache, "ln1_post.hook_scale", n)[:, 0, -1]  # layer 1
            head_out = head_out * (post / s_post)[:, None, :]
        heads = project(head_out)
        mlps = project(cache_stack(cache, "hook_mlp_out", n)[:, 0, -1])
        embed = project(cache["blocks.0.hook_resid_pre"][0, -1])
        bias = 0.0
        b_O = _stacked_or_none(model, "b_O")
        if b_O is not None:
            bias += float(project(b_O).sum())
        if beta is not None:
            bias += float(beta @ direction)
        b_U = _stacked_or_none(model, "b_U")
        if b_U is not None:
            bias += float(b_U[a] - b_U[b])
        logit_diff = float(logits[0, -1, a] - logits[0, -1, b])
    return LogitAttribution(str_tokens(model, tokens[0]), answer, wrong, logit_diff,
                            heads.float().cpu(), mlps.float().cpu(), float(embed), bias,
                            time.perf_counter() - t0)


def cache_stack(cache, hook: str, n_layers: int) -> Tensor:
    """Stack ``blocks.{l}.{hook}`` over layers into a leading ``layer`` axis."""
    return torch.stack([cache[f"blocks.{l}.{hook}"] for l in range(n_layers)])


def _dla_hooks(n_layers: int):
    wanted = {"blocks.0.hook_resid_pre", "ln_final.hook_scale"}
    for l in range(n_layers):
        wanted |= {f"blocks.{l}.attn.hook_z", f"blocks.{l}.hook_mlp_out", f"blocks.{l}.ln1_post.hook_scale"}
    return lambda name: name in wanted


def _stacked_or_none(model, attr: str) -> Tensor | None:
    # The bridge raises for bias-free checkpoints (Llama) instead of returning zeros.
    try:
        return getattr(model, attr)
    except AttributeError:
        return None


def _final_norm_params(model) -> tuple[Tensor | None, Tensor | None, bool]:
    """(gain g, bias β, whether the norm centres) of the final norm."""
    return _norm_params(model.ln_final)


def norm_gain(bridge) -> Tensor:
    """The multiplier of an RMSNorm/LayerNorm component of the bridge (Gemma's is ``1 + weight``)."""
    return _norm_params(bridge)[0]


def _norm_params(bridge) -> tuple[Tensor | None, Tensor | None, bool]:
    """(gain g, bias β, whether the norm centres) of a norm component of the bridge."""
    norm = bridge._original_component
    gain = getattr(norm, "weight", None)
    beta = getattr(norm, "bias", None)
    centered = isinstance(norm, torch.nn.LayerNorm) or "LayerNorm" in type(norm).__name__
    if gain is not None and "Gemma" in type(norm).__name__:
        gain = 1.0 + gain  # Gemma's RMSNorm multiplies by (1 + weight)
    return gain, beta, centered
