"""Causal tracing averaged over many facts (Meng et al. 2022, Figure 2): each fact is traced
(:func:`interp.knowledge.tracing.trace`) and its indirect effects are grouped by the role of each
token (first, middle and last subject token, the token after, further tokens, the last token),
then averaged by role and layer.
"""

from __future__ import annotations

import time
from typing import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from interp.errors import InterpError
from interp.knowledge.tracing import KINDS, Kind, fill_template, load_facts, trace
from interp.progress import progress

__all__ = ["AverageTrace", "ROLES", "average_trace", "role_rows"]


ROLES = ("first subject token", "middle subject tokens", "last subject token",
         "first subsequent token", "further tokens", "last token")


def role_rows(scores: Tensor, span: tuple[int, int]) -> Tensor:
    """``[role][layer]``: a trace's rows grouped by token role (ROME, Figure 2); NaN where
    a prompt has no token of that role."""
    a, b = span
    n_tok = scores.shape[0]
    groups = [[a], list(range(a + 1, b - 1)), [b - 1], [b] if b < n_tok - 1 else [],
              list(range(b + 1, n_tok - 1)), [n_tok - 1]]
    nan = torch.full((scores.shape[1],), float("nan"))
    return torch.stack([scores[g].mean(0) if g else nan for g in groups])


@dataclass
class AverageTrace:
    """Average indirect effect, P(answer | restored) − P(answer | corrupted), by token role."""

    effects: dict[str, Tensor]
    """Kind -> ``[role][layer]`` mean over facts (NaN-aware)."""
    roles: tuple[str, ...]
    n_facts: int
    mean_clean_prob: float
    mean_corrupt_prob: float
    seconds: float
    axes: tuple[str, ...] = ("role", "layer")

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.average_trace_figure`)."""
        from interp.figures import average_trace_figure

        return average_trace_figure(self)


def average_trace(model, facts: list[dict] | None = None, kinds: Sequence[Kind] = KINDS,
                  samples: int = 10, noise: float = 3.0, window: int = 10, seed: int = 1) -> AverageTrace:
    """Trace every fact and average the indirect effects by token role."""
    facts = load_facts() if facts is None else facts
    if not facts:
        raise InterpError("no facts to average over")
    t0 = time.perf_counter()
    per_kind: dict[str, list[Tensor]] = {k: [] for k in kinds}
    clean, corrupt = [], []
    for fact in progress(facts, desc="tracing facts", unit="fact", leave=False):
        tr = trace(model, fill_template(fact["template"], fact["subject"]), fact["subject"],
                   fact["answer"], kinds, samples, noise, window, seed)
        for k in kinds:
            per_kind[k].append(role_rows(tr.scores[k] - tr.corrupt_prob, tr.subject_range))
        clean.append(tr.clean_prob)
        corrupt.append(tr.corrupt_prob)
    effects = {k: torch.stack(v).nanmean(0) for k, v in per_kind.items()}
    return AverageTrace(effects, ROLES, len(facts), sum(clean) / len(clean), sum(corrupt) / len(corrupt),
                        time.perf_counter() - t0)
