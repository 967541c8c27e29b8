"""How much memory an attribution graph takes, estimated from the prompt's length and the model's shape
alone, how much this machine has for it, and the refusal of a graph that would not fit:
:func:`interp.circuits.graph.attribution_graph` asks before its clean run, and the CLI before the model
loads. A refusal names a setting that fits: the largest ``--max-feature-nodes``, a lower ``--batch``,
or, where no cap can help (a long prompt's error and token nodes alone fill the matrix), the longest
prompt that fits at these settings.

Where the memory lives: the frozen forward and its gradients on the model's device; the rows, the
adjacency and its pruning in host memory (on a CPU run, all of it in one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from interp.circuits.graph_pruning import ROW_BLOCK
from interp.circuits.graph_time import PREFIXES
from interp.errors import InterpError
from interp.host_memory import available_bytes

__all__ = ["FALLBACK_LIMIT", "GraphMemory", "MemoryLimit", "check_graph_size", "estimate_bytes", "estimate_parts",
           "machine_limit", "model_bytes"]

FALLBACK_LIMIT = 8 * 2**30
"""The limit where the machine cannot say how much memory it has free (bytes)."""
USABLE = 0.9
"""The share of the free memory a graph may plan to use (the rest: the allocator, the interpreter)."""


@dataclass(frozen=True)
class MemoryLimit:
    """Bytes a graph may use: ``host`` in RAM, ``device`` on the model's accelerator (None on a CPU
    run, where the host holds everything); ``where`` says what they came from, for the refusal."""

    host: int
    device: int | None = None
    where: str = "free on this machine"


@dataclass(frozen=True)
class GraphMemory:
    """A graph's peak memory in its two moments (bytes, allocator overhead included)."""

    device: int
    """While rows are computed, on the model's device: the frozen forward kept for the backward and one
    chunk's gradients (freed before pruning)."""
    rows: int
    """While rows are computed, in RAM: the rows, the influence estimate's temporaries, the adjacency."""
    pruning: int
    """While pruning, in RAM: the adjacency and its float64 copies."""

    def fits(self, limit: MemoryLimit) -> bool:
        if limit.device is None:
            return self.total <= limit.host
        return self.device <= limit.device and max(self.rows, self.pruning) <= limit.host

    @property
    def total(self) -> int:
        """The peak of a run that holds everything in one memory (a CPU run)."""
        return max(self.device + self.rows, self.pruning)

    @property
    def host(self) -> int:
        return max(self.rows, self.pruning)


def estimate_parts(n_pos: int, n_layers: int, d_model: int, d_vocab: int, k_per_token: float, max_feature_nodes: int,
                   batch: int, n_logits: int = 10, n_heads: int = 16) -> GraphMemory:
    """Peak memory of :func:`attribution_graph` and its pruning, beyond the model's, about. On the
    device: the clean run's attention patterns (the frozen forwards read them in place), the frozen
    forwards of one copy of the prompt kept for the backward (about four d_model-wide activations per
    layer and position, for each of the prefix lengths, :data:`interp.circuits.graph_time.PREFIXES`),
    and one chunk's backward: its gradients at every layer and one layer's batched temporaries (an
    attention pattern and four activations per row). On the host, while rows are computed: the rows
    (float32, every source) and the influence estimate's temporaries, then the dense adjacency; while
    pruning and scoring, about 36 bytes a matrix element (the float32 adjacency, float64 copies, masks,
    the sorted edge scores). Allocator overhead is a quarter on top. Measured against the peak resident
    memory beyond the model of what ``interp graph`` does in benchmarks/graph.py (README)."""
    active = int(n_layers * (n_pos - 1) * k_per_token)
    rows = min(active, max_feature_nodes)
    nodes = rows + n_layers * n_pos + n_pos + n_logits
    step = -(-n_pos // PREFIXES)
    prefixes = sum(min(n_pos, step * i) for i in range(1, PREFIXES + 1))  # every prefix length, summed
    forward = n_layers * (n_heads * n_pos * n_pos + 4 * prefixes * d_model) * 4 + 2 * d_vocab * 4
    grads = (n_layers + 1) * batch * n_pos * d_model * 4 + batch * (2 * n_heads * n_pos * n_pos + 4 * n_pos * d_model) * 4
    computing = rows * (active + n_layers * n_pos + n_pos) * 4 + 2 * ROW_BLOCK * active * 4
    pruning = nodes * nodes * (4 + 4 * 8)
    return GraphMemory(int(1.25 * (forward + grads)), int(1.25 * (computing + nodes * nodes * 4)), int(1.25 * pruning))


def estimate_bytes(n_pos: int, n_layers: int, d_model: int, d_vocab: int, k_per_token: float, max_feature_nodes: int,
                   batch: int, n_logits: int = 10, n_heads: int = 16) -> int:
    """:func:`estimate_parts`, device and host together (a CPU run's peak)."""
    return estimate_parts(n_pos, n_layers, d_model, d_vocab, k_per_token, max_feature_nodes, batch, n_logits,
                          n_heads).total


def machine_limit(device: str = "cpu", model_bytes: int = 0) -> MemoryLimit:
    """What a graph may use on this machine now: :data:`USABLE` of the free RAM and, for a CUDA model, of
    the device's free memory; ``model_bytes`` (a model not loaded yet) comes off the side that will hold
    it. ``INTERP_GRAPH_MEMORY_GB`` sets the host's limit by hand (a shared machine)."""
    by_hand = os.environ.get("INTERP_GRAPH_MEMORY_GB")
    if by_hand:
        try:
            host, where = int(float(by_hand) * 2**30), "INTERP_GRAPH_MEMORY_GB"
        except ValueError:
            raise InterpError(f"INTERP_GRAPH_MEMORY_GB must be a number of gigabytes, not {by_hand!r}") from None
    else:
        free = available_bytes()
        host, where = (int(USABLE * free), "free on this machine") if free else (FALLBACK_LIMIT, "default")
    if not str(device).startswith("cuda"):
        return MemoryLimit(max(0, host - model_bytes), None, where)
    import torch

    free_dev, _ = torch.cuda.mem_get_info(torch.device(device))
    return MemoryLimit(host, max(0, int(USABLE * free_dev) - model_bytes), where)


def model_bytes(shape) -> int:
    """A model's float32 weights from its shape (:class:`interp.architectures.ModelShape`), about: the
    embedding and an unembedding, and per layer the attention and a gated MLP."""
    d, h = shape.d_model, shape.d_head
    attn = d * h * (2 * shape.n_heads + 2 * shape.n_kv_heads)
    return 4 * (2 * shape.d_vocab * d + shape.n_layers * (attn + 3 * d * shape.d_mlp))


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def check_graph_size(n_pos: int, n_layers: int, d_model: int, d_vocab: int, n_heads: int, transcoders,
                     max_feature_nodes: int = 4096, batch: int = 32, memory_limit: MemoryLimit | int | None = None,
                     ) -> None:
    """Refuse, in one line, a prompt of ``n_pos`` tokens whose graph cannot be built: one token, or an
    estimated memory (:func:`estimate_parts`) over ``memory_limit`` (default: :func:`machine_limit`;
    an int is a host limit). The refusal names what would fit. Needs only the model's shape and the
    prompt's token count, so the CLI asks before the model loads."""
    if n_pos < 2:
        raise InterpError(f"the prompt is {n_pos} token{'s' if n_pos != 1 else ''}; a graph needs at least two "
                          "(the first is the attention sink)")
    limit = machine_limit() if memory_limit is None else (
        MemoryLimit(memory_limit, None, "limit") if isinstance(memory_limit, int) else memory_limit)
    k_est = max(getattr(tc.cfg, "k", 32) for tc in transcoders.layers.values())
    k_per_token = k_est * len(transcoders.layers) / n_layers

    def need(p: int = n_pos, cap: int = max_feature_nodes, b: int = batch) -> GraphMemory:
        return estimate_parts(p, n_layers, d_model, d_vocab, k_per_token, cap, b, n_heads=n_heads)

    now = need()
    if now.fits(limit):
        return
    if limit.device is not None and now.device > limit.device:
        over = (f"a graph of this {n_pos:,}-token prompt needs about {_gb(now.device)} on the device, over the "
                f"{_gb(limit.device)} free there")
    else:
        over = (f"a graph of this {n_pos:,}-token prompt needs about "
                f"{_gb(now.total if limit.device is None else now.host)}, over the {_gb(limit.host)} {limit.where}")
    raise InterpError(f"{over}; {fitting_setting(need, limit, n_pos, max_feature_nodes, batch)}")


def fitting_setting(need, limit: MemoryLimit, n_pos: int, cap: int, batch: int) -> str:
    """What to change so that the graph fits: the largest cap (at this batch, or a lower batch), or,
    where none fits, the longest prompt at these settings. ``need(p, cap, b)`` is the estimate."""
    def largest(lo: int, hi: int, ok) -> int | None:  # the largest v in [lo, hi] with ok(v), ok monotone
        if not ok(lo):
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        return lo

    fit_cap = largest(1, cap, lambda c: need(n_pos, c, batch).fits(limit))
    if fit_cap is not None:
        return f"--max-feature-nodes {fit_cap} fits (about {_gb(need(n_pos, fit_cap, batch).total)})"
    fit_batch = largest(1, batch, lambda b: need(n_pos, cap, b).fits(limit))
    if fit_batch is not None:
        return f"--batch {fit_batch} fits (about {_gb(need(n_pos, cap, fit_batch).total)})"
    for b in (batch, 1):
        fit_pos = largest(2, n_pos, lambda p: need(p, cap, b).fits(limit))
        if fit_pos is not None:
            extra = f" and --batch {b}" if b != batch else ""
            return (f"no --max-feature-nodes fits a prompt this long (its error and token nodes alone fill the "
                    f"matrix); a prompt of at most {fit_pos:,} tokens fits at these settings{extra}")
    return "not even a two-token graph fits; free some memory"
