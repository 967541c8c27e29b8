"""How much memory an attribution graph takes, estimated from the prompt's length and the model's shape
alone, and the refusal of a graph that would not fit: :func:`interp.circuits.graph.attribution_graph`
asks before its clean run, and the CLI before the model loads.
"""

from __future__ import annotations

from interp.circuits.graph_pruning import ROW_BLOCK
from interp.errors import InterpError

__all__ = ["MEMORY_LIMIT", "check_graph_size", "estimate_bytes"]

MEMORY_LIMIT = 8 * 2**30
"""Refuse a graph whose estimated memory exceeds this (bytes)."""


def estimate_bytes(n_pos: int, n_layers: int, d_model: int, d_vocab: int, k_per_token: float, max_feature_nodes: int,
                   batch: int, n_logits: int = 10, n_heads: int = 16) -> int:
    """Peak memory of :func:`attribution_graph` and its pruning, beyond the model's, about. While rows are
    computed: the frozen forward kept for the backward (per layer and copy, the frozen attention pattern
    twice and about four d_model-wide activations), one chunk's gradients at every layer, the rows
    (float32, every source), and the influence estimate's temporaries; then the dense adjacency and,
    while pruning, its float64 copies. Allocator overhead is a quarter on top. Calibrated on the embedded
    model with 30 transcoders (k 16), graph and pruning: 64 tokens measured 2.1 GB over the model's
    memory (this says 2.1), 128 tokens 4.5 GB (this says 4.8)."""
    active = int(n_layers * (n_pos - 1) * k_per_token)
    rows = min(active, max_feature_nodes)
    nodes = rows + n_layers * n_pos + n_pos + n_logits
    forward = n_layers * batch * (2 * n_heads * n_pos * n_pos + 4 * n_pos * d_model) * 4 + 2 * batch * d_vocab * 4
    grads = (n_layers + 1) * batch * n_pos * d_model * 4
    computing = forward + grads + rows * (active + n_layers * n_pos + n_pos) * 4 + 2 * ROW_BLOCK * active * 4
    pruning = nodes * nodes * (4 + 3 * 8)
    return int(1.25 * max(computing + nodes * nodes * 4, pruning))


def check_graph_size(n_pos: int, n_layers: int, d_model: int, d_vocab: int, n_heads: int, transcoders,
                     max_feature_nodes: int = 4096, batch: int = 32, memory_limit: int | None = None) -> None:
    """Refuse, in one line, a prompt of ``n_pos`` tokens whose graph cannot be built: one token, or an
    estimated memory (:func:`estimate_bytes`) over ``memory_limit``. Needs only the model's shape and the
    prompt's token count, so the CLI asks before the model loads."""
    if n_pos < 2:
        raise InterpError(f"the prompt is {n_pos} token{'s' if n_pos != 1 else ''}; a graph needs at least two "
                          "(the first is the attention sink)")
    memory_limit = MEMORY_LIMIT if memory_limit is None else memory_limit
    k_est = max(getattr(tc.cfg, "k", 32) for tc in transcoders.layers.values())
    need = estimate_bytes(n_pos, n_layers, d_model, d_vocab, k_est * len(transcoders.layers) / n_layers,
                          max_feature_nodes, batch, n_heads=n_heads)
    if need > memory_limit:
        raise InterpError(f"a graph of this {n_pos}-token prompt needs about {need / 2**30:.1f} GB, over the "
                          f"{memory_limit / 2**30:.0f} GB limit; shorten the prompt, or lower --max-feature-nodes "
                          f"({max_feature_nodes}) or --batch ({batch})")
