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

import sys
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.tokens import single_token, str_tokens, to_tokens

__all__ = ["METRICS", "MIN_GAP", "SMALL_GAP", "SPACE_HINT_RATIO", "Task", "baselines", "make_task",
    "metric_per_pair", "normalize", "warn_missing_space"]

Metric = Literal["logit_diff", "prob"]
METRICS: tuple[Metric, ...] = ("logit_diff", "prob")
MIN_GAP = 1e-3
"""Smallest |m_clean − m_corrupt| that normalising may divide by (logits, or probability). Batched
runs of the same prompt differ by ~1e-5 logits, so a relative 1e-6 let identical prompts through."""
SMALL_GAP = 0.1
"""Below this gap the normalised values amplify noise tenfold or more: a warning, not an error."""
SPACE_HINT_RATIO = 10.0
"""Warn when the space-prefixed form of an answer is this many times likelier than the answer given."""


@dataclass
class Task:
    """Tokenized prompt pairs with their answer and wrong token ids."""

    clean: Int[Tensor, "batch pos"]
    corrupt: Int[Tensor, "batch pos"]
    answer: Int[Tensor, " batch"]
    wrong: Int[Tensor, " batch"]
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
    for i in range(n):
        if answers[i] == wrongs[i]:
            raise InterpError(f"the answer and the wrong token are the same ({answers[i]!r}); the metric compares "
                              "two different tokens, e.g. --answer ' Paris' --wrong ' Rome'")
        if torch.equal(c_tok[i], k_tok[i]):
            raise InterpError(f"clean and corrupt prompts are identical ({clean_l[i]!r}); the corrupt prompt must "
                              "differ in the part you are studying")
    device = c_tok.device
    a = torch.tensor([single_token(model, x, "answer") for x in answers], device=device)
    w = torch.tensor([single_token(model, x, "wrong answer") for x in wrongs], device=device)
    warn_missing_space(model, c_tok, answers + wrongs)
    return Task(c_tok, k_tok, a, w, str_tokens(model, c_tok[0]), str_tokens(model, k_tok[0]))


@torch.no_grad()
def warn_missing_space(model, tokens: Int[Tensor, "batch pos"], words: list[str]) -> list[str]:
    """A line on stderr for each answer written without its leading space (``'Paris'``) whose
    space-prefixed token (``' Paris'``) the model finds at least ``SPACE_HINT_RATIO`` times likelier
    after the prompts: a common slip that silently scores a near-impossible token."""
    candidates = {}
    for word in dict.fromkeys(words):
        if word and not word[0].isspace():
            spaced = model.tokenizer.encode(" " + word, add_special_tokens=False)
            if len(spaced) == 1:
                candidates[word] = (single_token(model, word), spaced[0])
    if not candidates:
        return []
    probs = model(tokens)[:, -1].float().softmax(-1).mean(0)
    said = []
    for word, (plain, spaced) in candidates.items():
        if probs[spaced] >= SPACE_HINT_RATIO * probs[plain]:
            said.append(f"interp: warning: {word!r} has P = {probs[plain]:.2g} here, but {' ' + word!r} (with the "
                        f"leading space) has P = {probs[spaced]:.2g}; did you mean {' ' + word!r}?")
            print(said[-1], file=sys.stderr)
    return said


def metric_per_pair(logits: Float[Tensor, "rows d_vocab"], answer: Int[Tensor, " rows"],
                    wrong: Int[Tensor, " rows"], metric: Metric) -> Float[Tensor, " rows"]:
    """The metric of each row from its last-position logits."""
    logits = logits.float()
    if metric == "logit_diff":
        return logits.gather(-1, answer[:, None])[:, 0] - logits.gather(-1, wrong[:, None])[:, 0]
    if metric == "prob":
        return logits.softmax(-1).gather(-1, answer[:, None])[:, 0]
    raise InterpError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def normalize(values: Tensor, clean: float, corrupt: float) -> Tensor:
    """``(m - m_corrupt) / (m_clean - m_corrupt)``. Refuses a gap below :data:`MIN_GAP` (the runs
    agree up to batching noise) and warns on stderr below :data:`SMALL_GAP`."""
    gap = clean - corrupt
    if abs(gap) < MIN_GAP:
        raise InterpError(
            f"clean and corrupt runs give the same metric ({clean:.6g} vs {corrupt:.6g}); the normalised metric "
            "(m - m_corrupt) / (m_clean - m_corrupt) would divide noise by noise: use prompts that differ "
            "in the part you are studying")
    if abs(gap) < SMALL_GAP:
        print(f"interp: warning: the clean and corrupt metrics differ by only {gap:.3g}; normalised values "
              "are noisy", file=sys.stderr)
    return (values - corrupt) / gap
