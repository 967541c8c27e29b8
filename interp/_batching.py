"""Many interventions in one forward pass: rows appended at the layer where they start.

Patching and causal tracing both run one *base* batch (``B`` rows: prompt pairs, or
noised copies of a prompt) and ask what happens when some activation from layer ``L``
onward is replaced, for many independent *cells*. Everything before ``L`` is the same
for a cell and the base run, so it is computed once: at ``blocks.L.hook_resid_pre`` a
copy of the ``B`` base rows is appended per cell starting at ``L``; the caller's hooks
then edit those rows. With cells sorted by start layer, cell ``c`` owns rows
``B·(c+1) … B·(c+2) − 1``. Only the last position is unembedded.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

_CPU_TOKENS_PER_PASS = 4096
Hook = tuple[str, Callable]
# Only the last position is scored: unembed it alone (the unembedding dominates otherwise).
LAST_POSITION: Hook = ("unembed.hook_in", lambda x, *, hook: x[:, -1:])


def forward_with_cells(model, base_tokens: Int[Tensor, "base pos"], starts: Sequence[int],
                       hooks: Sequence[Hook], base_hooks: Sequence[Hook] = (),
                       sources: Sequence[int | None] | None = None, **forward_kwargs
                       ) -> Float[Tensor, "rows d_vocab"]:
    """Last-position logits of the base rows followed by each cell's copy of them.

    ``starts`` (ascending) is each cell's start layer; ``base_hooks`` run before the rows
    grow (e.g. noise on the embeddings); ``hooks`` run after, on the grown batch.
    ``sources[c]``, when given and not None, is an earlier-starting cell whose rows cell ``c``
    copies at its start instead of the base rows (a cell that shares that cell's interventions
    below its start branches off it). ``forward_kwargs`` go to the model (e.g. a prefix
    ``past_key_values`` whose layer ``l`` already holds as many rows as will exist there: see
    :func:`rows_at_layers`).
    """
    if list(starts) != sorted(starts):
        raise ValueError("cells must be sorted by start layer")
    n_base = base_tokens.shape[0]
    counts = Counter(starts)
    offsets, row = {}, n_base
    for layer in sorted(counts):
        offsets[layer] = row
        row += counts[layer] * n_base

    joining: dict[int, list[int | None]] = {}  # layer -> the source cell of each cell starting there
    for c, layer in enumerate(starts):
        src = sources[c] if sources is not None else None
        if src is not None and not (src < c and starts[src] < layer):
            raise ValueError(f"cell {c} cannot branch off cell {src}, which does not start below it")
        joining.setdefault(layer, []).append(src)

    def expand(x: Float[Tensor, "rows pos d_model"], *, hook, layer: int):
        assert x.shape[0] == offsets[layer], "rows out of step with the cells"
        if all(src is None for src in joining[layer]):
            return torch.cat([x, x[:n_base].repeat(counts[layer], 1, 1)])
        first = [0 if src is None else n_base * (src + 1) for src in joining[layer]]  # the source's first row
        return torch.cat([x, *(x[r:r + n_base] for r in first)])

    fwd = list(base_hooks)
    fwd += [(f"blocks.{layer}.hook_resid_pre", bind(expand, layer=layer)) for layer in sorted(counts)]
    fwd += [*hooks, LAST_POSITION]
    with torch.no_grad(), masks_follow_rows(model, n_base):
        return model.run_with_hooks(base_tokens, fwd_hooks=fwd, **forward_kwargs)[:, -1]


@contextmanager
def masks_follow_rows(model, n_base: int):
    """Let an explicit attention mask follow rows added mid-forward.

    Models whose attention takes a mask tensor built from the input (Gemma 3's sliding windows:
    ``[batch, 1, query, key]``) would see ``n_base`` mask rows against the grown batch. Every added
    row is a copy of a base row, in base order, so the mask of ``k · n_base`` rows is the base
    mask repeated ``k`` times: a forward pre-hook on each attention layer repeats it. Models that
    pass no mask (causal attention without padding) are untouched."""

    def follow(module, args, kwargs):
        mask = kwargs.get("attention_mask")
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if not (torch.is_tensor(mask) and torch.is_tensor(hidden) and mask.dim() == 4):
            return None
        rows = hidden.shape[0]
        if mask.shape[0] == rows or mask.shape[0] != n_base or rows % n_base:
            return None
        return args, {**kwargs, "attention_mask": mask.repeat(rows // n_base, 1, 1, 1)}

    handles = [block.attn.register_forward_pre_hook(follow, with_kwargs=True) for block in model.blocks]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def rows_at_layers(n_base: int, starts: Sequence[int], n_layers: int) -> list[int]:
    """How many rows the batch holds in each layer when cells start at ``starts``."""
    counts = Counter(starts)
    rows, out = n_base, []
    for layer in range(n_layers):
        rows += counts.get(layer, 0) * n_base
        out.append(rows)
    return out


def bind(fn, **kwargs) -> Callable:
    """A TransformerLens hook ``(x, *, hook)`` calling ``fn(x, hook=hook, **kwargs)``."""
    return lambda x, *, hook: fn(x, hook=hook, **kwargs)


def cells_per_pass(model, rows_per_cell: int, n_pos: int, budget: float | None = None) -> int:
    """How many cells fit one pass: activation bytes per row against a memory budget."""
    cfg = model.cfg
    on_gpu = str(cfg.device).startswith("cuda")
    if budget is None:
        budget = 0.5 * torch.cuda.mem_get_info(torch.device(cfg.device))[0] if on_gpu else 1.5e9
    # Live activations of one row during a no-grad block: residual copies, q/k/v,
    # attention scores and pattern, MLP hidden; plus the last position's logits.
    per_token = 8 * cfg.d_model + 3 * (cfg.d_mlp or 4 * cfg.d_model) + 3 * cfg.n_heads * n_pos
    per_row = 4 * (n_pos * per_token + cfg.d_vocab)
    cells = int(budget // (per_row * rows_per_cell)) - 1
    if not on_gpu:
        # On CPU, passes past a few thousand tokens fall out of cache and page-fault on
        # every fresh activation: 2700 cells of 10 tokens ran 1.5x slower in one pass
        # than in passes of 200-600 cells (benchmarks/RESULTS.md).
        cells = min(cells, _CPU_TOKENS_PER_PASS // (n_pos * rows_per_cell))
    return max(1, cells)


def is_oom(err: Exception) -> bool:
    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def free_memory(model) -> None:
    import gc

    gc.collect()
    if str(model.cfg.device).startswith("cuda"):
        torch.cuda.empty_cache()
