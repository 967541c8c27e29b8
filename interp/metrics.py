"""Patching metrics on last-position logits, and the prompt-pair task they score.

A :class:`Task` is a batch of (clean, corrupt) prompt pairs of equal token length,
each with an answer and a wrong token. Metrics read the logits of the last position:

* ``logit_diff``: ``logit[answer] - logit[wrong]``;
* ``prob``: ``softmax(logits)[answer]``;

each averaged over the pairs. The normalised metric of a patched run is
``(m - m_corrupt) / (m_clean - m_corrupt)``: 0 = as corrupted, 1 = as clean, in both
patching directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.tokens import single_token, str_tokens, to_tokens

Metric = Literal["logit_diff", "prob"]
METRICS: tuple[Metric, ...] = ("logit_diff", "prob")


@dataclass
class Task:
    """Tokenized prompt pairs with their answer and wrong token ids."""

    clean: Int[Tensor, "batch pos"]
    corrupt: Int[Tensor, "batch pos"]
    answer: Int[Tensor, "batch"]
    wrong: Int[Tensor, "batch"]
    clean_tokens: list[str]
    """Token strings of the first clean prompt."""
    corrupt_tokens: list[str]
    """Token strings of the first corrupt prompt."""

    @property
    def n_pairs(self) -> int:
        return self.clean.shape[0]

    def runs(self, direction: str) -> tuple[Tensor, Tensor]:
        """``(base, source)`` tokens: denoising patches clean values into the corrupt run,
        noising corrupt values into the clean run."""
        if direction == "denoise":
            return self.corrupt, self.clean
        if direction == "noise":
            return self.clean, self.corrupt
        raise InterpError(f"unknown direction {direction!r}; choose denoise or noise")


def baselines(direction: str, base_metric: float, source_metric: float) -> tuple[float, float]:
    """``(clean, corrupt)`` metrics from the base and source runs of ``direction``."""
    return (source_metric, base_metric) if direction == "denoise" else (base_metric, source_metric)


def make_task(model, clean: str | list[str], corrupt: str | list[str],
              answer: str | list[str], wrong: str | list[str]) -> Task:
    """Tokenize and check a batch of prompt pairs (or one pair)."""
    clean_l = [clean] if isinstance(clean, str) else list(clean)
    corrupt_l = [corrupt] if isinstance(corrupt, str) else list(corrupt)
    if len(clean_l) != len(corrupt_l):
        raise InterpError(f"{len(clean_l)} clean prompts but {len(corrupt_l)} corrupt prompts")
    n = len(clean_l)
    answers = [answer] * n if isinstance(answer, str) else list(answer)
    wrongs = [wrong] * n if isinstance(wrong, str) else list(wrong)
    if len(answers) != n or len(wrongs) != n:
        raise InterpError(f"{n} prompt pairs need {n} answers and wrong answers "
                          f"(got {len(answers)} and {len(wrongs)})")
    c_tok = to_tokens(model, clean_l)
    k_tok = to_tokens(model, corrupt_l)
    if c_tok.shape != k_tok.shape:
        raise InterpError(
            f"clean and corrupt prompts tokenize to different lengths: clean "
            f"{str_tokens(model, c_tok[0])} ({c_tok.shape[1]} tokens) vs corrupt "
            f"{str_tokens(model, k_tok[0])} ({k_tok.shape[1]} tokens)")
    device = c_tok.device
    a = torch.tensor([single_token(model, x, "answer") for x in answers], device=device)
    w = torch.tensor([single_token(model, x, "wrong answer") for x in wrongs], device=device)
    return Task(c_tok, k_tok, a, w, str_tokens(model, c_tok[0]), str_tokens(model, k_tok[0]))


def metric_per_pair(logits: Float[Tensor, "rows d_vocab"], answer: Int[Tensor, "rows"],
                    wrong: Int[Tensor, "rows"], metric: Metric) -> Float[Tensor, "rows"]:
    """The metric of each row from its last-position logits."""
    logits = logits.float()
    if metric == "logit_diff":
        return logits.gather(-1, answer[:, None])[:, 0] - logits.gather(-1, wrong[:, None])[:, 0]
    if metric == "prob":
        return logits.softmax(-1).gather(-1, answer[:, None])[:, 0]
    raise InterpError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def normalize(values: Tensor, clean: float, corrupt: float) -> Tensor:
    """``(m - m_corrupt) / (m_clean - m_corrupt)``; refuses a zero denominator."""
    gap = clean - corrupt
    if abs(gap) < 1e-6 * max(1.0, abs(clean)):
        raise InterpError(
            f"clean and corrupt runs give the same metric ({clean:.6g}); the normalised metric "
            "(m - m_corrupt) / (m_clean - m_corrupt) divides by zero: use prompts that differ "
            "in the part you are studying")
    return (values - corrupt) / gap
