"""How long an attribution graph takes: the cost of its feature rows, the order that makes a few of them
a fair sample of the rest, and the work after the rows (pruning, scores, writing).

- **Rows.** A chunk of up to ``batch`` rows is one backward pass from the chunk's highest layer down,
  so it costs about ``top layer + ROW_COST_BASE`` layer-backwards, whatever the count in it (measured
  on the embedded model: a chunk at layer 0 is almost free, one at layer 29 about 30 times layer 1's).
- **Order.** Chunks of one layer each, taken in a low-discrepancy order over the layers
  (:func:`interleaved`), so that every prefix of the work, the first block included, spans the layers
  and its rate is the whole run's: the estimate and the progress bar's ETA agree from the start.
- **After the rows.** The bias run (one more forward, timed by the clean run), the labels (timed on one
  block of them) and passes over the n_nodes² adjacency: its assembly, pruning, the influence series
  (about one pass per layer, several times over), scores and the exactness check. Passes are timed by
  a probe of this machine's memory (:func:`pass_seconds`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ROW_COST_BASE", "after_rows_seconds", "chunk_costs", "interleaved", "pass_seconds", "rounds_cost"]

ROW_COST_BASE = 0.15
"""A chunk's cost beyond its top layer, in layer-backwards (the embedding, the gradients' columns)."""

PASSES_PER_LAYER = 2.5
"""Passes over the adjacency per layer of depth, in :func:`pass_seconds`: the influence series runs about
once per layer, in pruning (twice) and in the full and pruned scores."""
PASSES_FIXED = 30
"""Passes over the adjacency whatever the depth: float64 copies, normalisations, masks, sorting the
edge scores for their threshold, the summary's and the JSON's reads. With the two above, fitted on the
embedded model's graphs of 3 to 113 tokens (985 to 7,609 nodes)."""
ROW_PASSES = 12
"""Passes over the computed rows (features kept × sources) to order, gather and copy them into the
adjacency and to sum what the cap left out."""


def chunk_costs(layers: Sequence[int], batch: int) -> float:
    """The cost, in layer-backwards, of rows at ``layers`` computed in chunks of ``batch`` after sorting
    by layer (each chunk costs its top layer)."""
    s = np.sort(np.asarray(layers, dtype=np.int64))
    tops = s[np.minimum(np.arange(batch - 1, len(s) + batch - 1, batch), len(s) - 1)] if len(s) else s
    return float((tops + ROW_COST_BASE).sum())


def rounds_cost(layers: Sequence[int], per_call: int, batch: int) -> float:
    """The cost of rows at ``layers`` computed ``per_call`` at a time in this order (a capped graph's
    rounds by influence), each call sorted and chunked by ``batch``."""
    return sum(chunk_costs(layers[i:i + per_call], batch) for i in range(0, len(layers), per_call))


def interleaved(n: int) -> list[int]:
    """0..n-1 in a low-discrepancy order (golden-ratio steps): every prefix spreads over the range."""
    return sorted(range(n), key=lambda i: (i * 0.6180339887498949) % 1.0)


@functools.cache
def pass_seconds() -> float:
    """Seconds per float32 element of one elementwise pass into a new 64 MB tensor on this machine's CPU
    (where the adjacency lives; the new tensor's pages are part of the cost): the median of three."""
    m = torch.ones(4096, 4096)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        m.abs()
        times.append(time.perf_counter() - t0)
    return sorted(times)[1] / m.numel()


def after_rows_seconds(n_nodes: int, n_layers: int, rows_read: int, forward_seconds: float,
                       label_seconds: float) -> float:
    """The work after a graph's rows, in seconds: the bias run (one forward), the labels, and the passes
    over the adjacency and the ``rows_read`` elements of computed rows (module docstring)."""
    passes = PASSES_FIXED + PASSES_PER_LAYER * (n_layers + 2)
    return forward_seconds + label_seconds + pass_seconds() * (passes * n_nodes * n_nodes + ROW_PASSES * rows_read)
