"""How long an attribution graph takes: the cost of its feature rows, the order that makes a few of them
a fair sample of the rest, and the work after the rows (pruning, scores, writing).

- **Rows.** A chunk of up to ``batch`` rows is one batch of backward passes from the chunk's highest
  layer down, over the prompt's first positions up to the chunk's furthest target, rounded up to one
  of :data:`PREFIXES` lengths (a target reads nothing after its position). It costs about
  ``(rows × prefix + CHUNK_DISPATCH) × (top layer + ROW_COST_BASE) + CHUNK_FIXED`` row-positions of
  one layer's backward (:func:`chunk_cost`; fitted on the embedded model on a 2-core CPU, where one
  such unit took 12 µs): a chunk at layer 0 is almost free, one at layer 29 about 30 times layer 1's,
  one over a quarter of the prompt a quarter of the whole prompt's.
- **Chunks** (:func:`causal_chunks`): the rows sorted by layer and prefix, cut where the costs above
  sum to the least (a dynamic programme over the cuts), so that rows close in layer and position
  share a chunk and a costly row does not raise a cheap chunk's price.
- **Order.** The chunks taken in a low-discrepancy order (:func:`interleaved`), so that every prefix of
  the work, the first block included, spans the layers and positions and its rate is the whole run's:
  the estimate and the progress bar's ETA agree from the start.
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

__all__ = ["PREFIXES", "ROW_COST_BASE", "after_rows_seconds", "causal_chunks", "chunk_cost", "chunk_costs",
           "interleaved", "pass_seconds", "prefix_lengths", "rounds_cost"]

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


PREFIXES = 8
"""Prefix lengths a graph's backward passes run over: the prompt's length in eighths, rounded up (each
has one frozen forward, shared by the chunks that end there)."""
CHUNK_DISPATCH = 76
"""A chunk's cost per layer whatever its rows, in row-positions of a d_model-576 model (the passes'
dispatch: about 1 ms a layer). A row-position's work grows as d_model², the dispatch does not, so on
a narrower model the dispatch counts for more rows (:func:`chunk_cost`)."""
CHUNK_FIXED = 160
"""A chunk's cost whatever its depth, in row-positions of a d_model-576 model (about 2 ms)."""
REFERENCE_WIDTH = 576
"""The d_model the two costs above were measured at (the embedded model's)."""


def prefix_lengths(positions: Sequence[int], n_pos: int) -> np.ndarray:
    """The prefix each target's backward runs over: its position + 1, rounded up to a :data:`PREFIXES` step."""
    step = -(-n_pos // PREFIXES)
    return np.minimum(n_pos, -(-(np.asarray(positions, dtype=np.int64) + 1) // step) * step)


def chunk_cost(rows: int, prefix: int, top: int, d_model: int = REFERENCE_WIDTH) -> float:
    """One chunk's cost in row-positions of one layer's backward (module docstring), on a model of width
    ``d_model``."""
    fixed = (REFERENCE_WIDTH / d_model) ** 2
    return (rows * prefix + CHUNK_DISPATCH * fixed) * (top + ROW_COST_BASE) + CHUNK_FIXED * fixed


def causal_chunks(layers: Sequence[int], lengths: Sequence[int], batch: int,
                  d_model: int = REFERENCE_WIDTH) -> list[np.ndarray]:
    """Row indices in chunks of at most ``batch`` that cost the least in all (module docstring): the rows
    sorted by layer, then prefix length, and cut where :func:`chunk_cost` sums to the least."""
    layers, lengths = np.asarray(layers, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    order = np.lexsort((lengths, layers))
    top, length = layers[order].tolist(), lengths[order].tolist()
    n = len(order)
    best, cut = [0.0] * (n + 1), [0] * (n + 1)
    for j in range(1, n + 1):  # best[j]: the least cost of the first j rows; the chunk ending at j starts at cut[j]
        longest, best[j] = 0, float("inf")
        for i in range(j - 1, max(-1, j - batch - 1), -1):
            longest = max(longest, length[i])
            c = best[i] + chunk_cost(j - i, longest, top[j - 1], d_model)
            if c < best[j]:
                best[j], cut[j] = c, i
    chunks, j = [], n
    while j > 0:
        chunks.append(order[cut[j]:j])
        j = cut[j]
    return chunks[::-1]


def chunk_costs(layers: Sequence[int], positions: Sequence[int], n_pos: int, batch: int,
                d_model: int = REFERENCE_WIDTH) -> float:
    """The cost, in row-positions of one layer's backward, of rows at ``layers`` and ``positions`` in
    :func:`causal_chunks`."""
    layers = np.asarray(layers, dtype=np.int64)
    lengths = prefix_lengths(positions, n_pos)
    return float(sum(chunk_cost(len(c), int(lengths[c].max()), int(layers[c].max()), d_model)
                     for c in causal_chunks(layers, lengths, batch, d_model)))


def rounds_cost(layers: Sequence[int], positions: Sequence[int], n_pos: int, per_call: int, batch: int,
                d_model: int = REFERENCE_WIDTH) -> float:
    """The cost of rows at ``layers`` and ``positions`` computed ``per_call`` at a time in this order (a
    capped graph's rounds by influence), each call chunked by :func:`causal_chunks`."""
    return sum(chunk_costs(layers[i:i + per_call], positions[i:i + per_call], n_pos, batch, d_model)
               for i in range(0, len(layers), per_call))


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
