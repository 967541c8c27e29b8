"""Attention patterns and head detectors.

Patterns come from ``blocks.{l}.attn.hook_pattern``, which the bridge reports per
*query* head, so GQA models (SmolLM2: 9 query heads over 3 KV heads) are scored
per query head.

Detectors run on ``n_seqs`` sequences of ``seq_len`` random tokens repeated twice
(after BOS when the model uses one). For a destination token at position ``i`` of
the second repeat, whose earlier copy sits at ``i - seq_len``:

* previous-token score: mean attention ``i -> i - 1`` over every position after the first;
* duplicate-token score: mean attention ``i -> i - seq_len`` (the earlier copy);
* induction score: mean attention ``i -> i - seq_len + 1`` (the token after the earlier
  copy), as in Olsson et al. 2022.

The same pass measures the loss on each repeat: a large drop from the first to the
second repeat shows that in-context copying happens at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.architectures import sliding_windows
from interp.errors import InterpError, check_index
from interp.tokens import str_tokens, to_tokens

__all__ = ["AttentionPatterns", "DETECTORS", "HeadScores", "MAX_PATTERN_VALUES", "attention_patterns",
    "detect_heads", "repeated_random_tokens"]

Detector = Literal["induction", "previous", "duplicate"]
DETECTORS: tuple[Detector, ...] = ("induction", "previous", "duplicate")


@dataclass
class AttentionPatterns:
    """Attention patterns of one prompt."""

    pattern: Float[Tensor, "layer head query key"]
    """softmax(q·kᵀ/√d_head) per selected layer and query head; rows sum to 1."""
    layers: list[int]
    """Model layer index of each entry on the ``layer`` axis."""
    heads: list[int]
    """Query-head index of each entry on the ``head`` axis."""
    tokens: list[str]
    """Token strings, labelling both the query and key axes."""
    seconds: float
    axes: tuple[str, ...] = ("layer", "head", "query", "key")
    windows: list[int | None] = field(default_factory=list)
    """Each selected layer's sliding attention window (a query sees only the last ``w`` keys, itself
    included), or None for full causal attention (Gemma 3: 5 of every 6 layers are windowed)."""

    def figure(self, layer: int | None = None, head: int | None = None):
        """This result as a plotly figure (:func:`interp.figures.attention_figure`)."""
        from interp.figures import attention_figure

        return attention_figure(self, layer, head)


MAX_PATTERN_VALUES = 50_000_000
"""Largest [layer, head, query, key] result :func:`attention_patterns` builds (200 MB of float32); the
whole grid grows with the square of the prompt (30 × 9 × 2000² = 1.1e9 values for SmolLM2)."""


def attention_patterns(model, prompt: str, layer: int | None = None, head: int | None = None,
                       max_values: int = MAX_PATTERN_VALUES) -> AttentionPatterns:
    """Patterns for every layer and head, one layer, or one (layer, head). Refuses, before any
    forward pass, a result of more than ``max_values`` numbers."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    layers = list(range(n_layers)) if layer is None else [check_index(layer, n_layers, "layer")]
    heads = list(range(n_heads)) if head is None else [check_index(head, n_heads, "head")]
    tokens = to_tokens(model, prompt)
    n = len(layers) * len(heads) * tokens.shape[1] ** 2
    if n > max_values:
        raise InterpError(f"attention for {len(layers)} layer(s) x {len(heads)} head(s) of a {tokens.shape[1]}-token "
                          f"prompt is {n:.3g} values ({4 * n / 1e9:.1f} GB), above the limit of {max_values:.3g}; "
                          "pass --layer L (and --head H), or a shorter prompt")
    names = {f"blocks.{l}.attn.hook_pattern" for l in layers}
    t0 = time.perf_counter()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names,
                                        stop_at_layer=max(layers) + 1)
    pattern = torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0, heads] for l in layers])
    windows = sliding_windows(model)
    return AttentionPatterns(pattern.float().cpu(), layers, heads, str_tokens(model, tokens[0]),
                             time.perf_counter() - t0, windows=[windows[l] for l in layers])


def repeated_random_tokens(model, n_seqs: int = 8, seq_len: int = 50, seed: int = 0,
                           low: int = 100, high: int = 20000) -> Int[Tensor, "batch pos"]:
    """``n_seqs`` rows of ``seq_len`` random ids repeated twice, after BOS if the model uses one.

    Ids are drawn from ``[low, high)``: above the special tokens and below the rarest
    merges, whose junk tokens make the first-repeat loss meaningless.
    """
    if seq_len < 2 or n_seqs < 1:
        raise InterpError("need at least 1 sequence of at least 2 tokens")
    high = min(high, model.cfg.d_vocab)
    low = min(low, high - 1)
    gen = torch.Generator().manual_seed(seed)
    half = torch.randint(low, high, (n_seqs, seq_len), generator=gen)
    tokens = torch.cat([half, half], dim=1)
    if model.cfg.default_prepend_bos:
        bos = torch.full((n_seqs, 1), model.tokenizer.bos_token_id, dtype=torch.long)
        tokens = torch.cat([bos, tokens], dim=1)
    return tokens.to(model.cfg.device)


@dataclass
class HeadScores:
    """Head-detector scores and the repeated-token loss from one pass."""

    scores: dict[str, Float[Tensor, "layer head"]]
    """Detector name -> mean attention score per (layer, query head), in [0, 1]."""
    loss_first_repeat: float
    """Mean next-token loss (nats) over the first repeat."""
    loss_second_repeat: float
    """Mean next-token loss (nats) over the second repeat."""
    n_seqs: int
    seq_len: int
    seconds: float
    axes: tuple[str, ...] = ("layer", "head")

    def top(self, detector: Detector, n: int = 10) -> list[dict]:
        """The ``n`` highest-scoring heads as ``{"layer", "head", "name", "score"}``."""
        s = self.scores[detector]
        values, flat = s.flatten().topk(min(n, s.numel()))
        return [{"layer": int(i) // s.shape[1], "head": int(i) % s.shape[1],
                 "name": f"L{int(i) // s.shape[1]}H{int(i) % s.shape[1]}", "score": float(v)}
                for v, i in zip(values, flat)]

    def figure(self, detectors: list[str] | None = None):
        """This result as a plotly figure (:func:`interp.figures.head_scores_figure`)."""
        from interp.figures import head_scores_figure

        return head_scores_figure(self, detectors)


def detect_heads(model, n_seqs: int = 8, seq_len: int = 50, seed: int = 0) -> HeadScores:
    """Score every head as previous-token, duplicate-token and induction head in one pass."""
    tokens = repeated_random_tokens(model, n_seqs, seq_len, seed)
    off = tokens.shape[1] - 2 * seq_len  # 1 when BOS leads
    second = torch.arange(off + seq_len + 1, off + 2 * seq_len, device=tokens.device)
    after_first = torch.arange(off + 1, tokens.shape[1], device=tokens.device)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    scores = {d: torch.zeros(n_layers, n_heads) for d in DETECTORS}

    def score(pattern: Float[Tensor, "batch head query key"], *, hook) -> None:
        layer = int(hook.name.split(".")[1])
        p = pattern.float()
        scores["previous"][layer] = p[:, :, after_first, after_first - 1].mean((0, 2)).cpu()
        scores["duplicate"][layer] = p[:, :, second, second - seq_len].mean((0, 2)).cpu()
        scores["induction"][layer] = p[:, :, second, second - seq_len + 1].mean((0, 2)).cpu()

    t0 = time.perf_counter()
    with torch.no_grad():
        logits = model.run_with_hooks(
            tokens, fwd_hooks=[(lambda n: n.endswith("attn.hook_pattern"), score)])
    nll = _next_token_nll(logits, tokens)
    # nll[:, i] is the loss of predicting token i+1; skip each repeat's first token,
    # which no context can predict.
    first = nll[:, off:off + seq_len - 1].mean().item()
    second_loss = nll[:, off + seq_len:off + 2 * seq_len - 1].mean().item()
    return HeadScores(scores, first, second_loss, n_seqs, seq_len, time.perf_counter() - t0)


def _next_token_nll(logits: Float[Tensor, "batch pos d_vocab"],
                    tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_minus_1"]:
    logprobs = logits[:, :-1].float().log_softmax(-1)
    return -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
