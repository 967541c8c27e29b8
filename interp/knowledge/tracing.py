"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

Corrupt the subject: add Gaussian noise of scale ``noise × σ`` (σ = the standard
deviation of the model's token embeddings, measured once per model and cached) to the
subject tokens' embeddings, in ``samples`` noised copies of the prompt. Then restore
one clean state and measure how much of the clean answer's probability comes back:

* ``hidden``: the residual stream after block ``l`` at token ``t``;
* ``mlp`` / ``attn``: the MLP / attention output at token ``t`` in every layer of a
  window of ``window`` layers centred on ``l`` (ROME: ``l − w/2 … l + w/2 − 1``).

The score of cell (t, l) is P(answer) averaged over the noised copies. As in ROME, the
same noise is used for every cell (seeded), so scores are reproducible.

ROME's reference runs one batch of ``samples + 1`` rows per cell. :func:`trace` instead
appends each cell's noised copies at the first layer it restores
(:mod:`interp._batching`), so the corrupted run before that layer is computed once.
:func:`trace_loop` keeps ROME's structure as the reference the tests and the benchmark
compare against.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from torch import Tensor

from interp._batching import cells_per_pass, forward_with_cells, free_memory, is_oom, rows_at_layers
from interp._files import read_json
from interp.cache import cache_dir, slug, write_json
from interp.architectures import sliding_windows
from interp.errors import InterpError, check_index
from interp.progress import Estimate, progress
from interp.tokens import single_token, str_tokens, to_tokens

__all__ = ["KINDS", "Trace", "embedding_std", "fill_template", "load_facts", "subject_span", "trace", "trace_loop"]

Kind = Literal["hidden", "mlp", "attn"]
KINDS: tuple[Kind, ...] = ("hidden", "mlp", "attn")
_HOOK = {"hidden": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}


@dataclass
class Trace:
    """A causal trace of one prompt."""

    scores: dict[str, Tensor]
    """Kind -> P(answer) with that state restored, ``[token][layer]``."""
    tokens: list[str]
    subject: str
    subject_range: tuple[int, int]
    """Token span ``[start, end)`` of the subject."""
    answer: str
    clean_prob: float
    corrupt_prob: float
    samples: int
    noise_scale: float
    """The absolute noise standard deviation used (noise × σ of the embeddings)."""
    window: int
    seconds: float
    axes: tuple[str, ...] = ("token", "layer")
    extra: dict = field(default_factory=dict)

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.trace_figure`)."""
        from interp.figures import trace_figure

        return trace_figure(self)


def fill_template(template: str, subject: str) -> str:
    if "{}" not in template:
        raise InterpError(f"template {template!r} has no '{{}}' where the subject goes")
    return template.replace("{}", subject, 1)


def subject_span(model, prompt: str, subject: str) -> tuple[int, int]:
    """Token span ``[start, end)`` covering ``subject``'s characters (its last occurrence),
    found from the tokenizer's character offsets, so it works however it tokenizes."""
    if not subject or not subject.strip():
        raise InterpError("empty subject")
    at = prompt.rfind(subject)
    if at < 0:
        raise InterpError(f"subject {subject!r} is not in the prompt {prompt!r}")
    enc = model.tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)
    offsets = enc["offset_mapping"]
    n_model = to_tokens(model, prompt).shape[1]
    shift = n_model - len(offsets)  # 1 when the model prepends BOS
    lo, hi = at, at + len(subject)
    inside = [i for i, (a, b) in enumerate(offsets) if a < hi and b > lo]
    return inside[0] + shift, inside[-1] + 1 + shift


def embedding_std(model) -> float:
    """σ of the token embeddings over the tokens of the shipped facts' prompts, cached per model.

    ROME measures it over its subjects; we use whole prompts for a broader sample."""
    path = cache_dir("tracing") / f"{slug(model.cfg.model_name)}-embed-std.json"
    try:
        return float(json.loads(path.read_text())["std"])
    except Exception:  # absent or corrupt: measure again
        pass
    facts = load_facts()
    texts = [fill_template(f["template"], f["subject"]) + f["answer"] for f in facts]
    ids = torch.cat([to_tokens(model, t)[0] for t in texts])
    with torch.no_grad():
        _, cache = model.run_with_cache(ids[None], names_filter="hook_embed", stop_at_layer=0)
        std = cache["hook_embed"].float().std().item()
    write_json(path, {"std": std, "tokens": int(ids.numel()), "model": model.cfg.model_name})
    return std


def load_facts(path: str | None = None) -> list[dict]:
    """Facts as ``{"template", "subject", "answer"}`` (the shipped set by default)."""
    data = read_json(path, "known_facts.json", "facts file")
    facts = data["facts"] if isinstance(data, dict) else data
    for i, f in enumerate(facts):
        if not {"template", "subject", "answer"} <= set(f):
            raise InterpError(f"fact {i} of {path} needs template, subject and answer")
    return facts


@dataclass
class _Setup:
    tokens: Tensor
    span: tuple[int, int]
    answer_id: int
    answer: str
    noise: Tensor
    scale: float
    clean_prob: float
    clean: dict


def _prepare(model, prompt, subject, answer, samples, noise, seed, kinds) -> _Setup:
    tokens = to_tokens(model, prompt)
    span = subject_span(model, prompt, subject)
    n = model.cfg.n_layers
    names = {f"blocks.{l}.{_HOOK[k]}" for k in kinds for l in range(n)}
    with torch.no_grad():
        logits, clean = model.run_with_cache(tokens, names_filter=lambda x: x in names)
    probs = logits[0, -1].float().softmax(-1)
    if answer is None:
        answer_id = int(probs.argmax())
        answer = model.tokenizer.decode([answer_id])
    else:
        answer_id = single_token(model, answer, "answer")
    scale = noise * embedding_std(model)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(samples, span[1] - span[0], model.cfg.d_model, generator=gen) * scale
    return _Setup(tokens, span, answer_id, answer, eps.to(model.cfg.device, model.cfg.dtype), scale,
                  probs[answer_id].item(), clean)


def _noise_hook(setup: _Setup):
    a, b = setup.span

    def add(x, *, hook):
        x = x.clone()
        x[:, a:b] += setup.noise[: x.shape[0]]
        return x

    return ("hook_embed", add)


def _window(layer: int, window: int, n_layers: int) -> range:
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def _restores(kind: str, token: int, layer: int, window: int, n_layers: int) -> list[tuple[str, int]]:
    """The (hook, token) restores of one cell."""
    if kind == "hidden":
        return [(f"blocks.{layer}.{_HOOK[kind]}", token)]
    return [(f"blocks.{l}.{_HOOK[kind]}", token) for l in _window(layer, window, n_layers)]


def _batched_restores(kind: str, token: int, layer: int, window: int, n_layers: int) -> list[tuple[str, int]]:
    """:func:`_restores` for the batched trace: a hidden restore after block ``l`` is made at
    block ``l + 1``'s input (the same tensor), so the cell's rows join the batch one block later
    and block ``l`` is not run again for them."""
    if kind == "hidden" and layer + 1 < n_layers:
        return [(f"blocks.{layer + 1}.hook_resid_pre", token)]
    return _restores(kind, token, layer, window, n_layers)


def _clean_key(name: str) -> str:
    """The clean-run cache entry a batched restore reads (block l+1's input is block l's output)."""
    if name.endswith(".hook_resid_pre"):
        return f"blocks.{int(name.split('.')[1]) - 1}.hook_resid_post"
    return name


MAX_TRACE_TOKENS = 512
"""Longest prompt a trace takes: its work grows with the square of the length (every token's
restore runs the rest of the prompt) and its prefix cache with the length."""


def check_trace_size(model, n_tok: int, samples: int, n_kinds: int) -> None:
    """Refuse, before any work, a prompt whose trace would not finish or fit: past
    :data:`MAX_TRACE_TOKENS`, with the work and the key/value cache it would need."""
    if n_tok <= MAX_TRACE_TOKENS:
        return
    cfg = model.cfg
    kv_heads = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    cache_gb = (samples + 1) * n_tok * cfg.n_layers * 2 * kv_heads * cfg.d_head * 4 / 1e9
    positions = n_kinds * cfg.n_layers * n_tok * (n_tok + 1) // 2 * (samples + 1)
    raise InterpError(f"the prompt has {n_tok:,} tokens; its trace would run {positions:,.0f} token positions "
                      f"({n_kinds * n_tok * cfg.n_layers:,} cells, each over the rest of the prompt) with a "
                      f"{cache_gb:.2g} GB prefix cache; trace the sentence that states the fact "
                      f"(at most {MAX_TRACE_TOKENS} tokens)")


def _check(model, samples: int, window: int, kinds) -> None:
    if samples < 1:
        raise InterpError(f"need at least 1 noise sample (got {samples})")
    if window < 1:
        raise InterpError(f"window must be at least 1 layer (got {window})")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise InterpError(f"unknown trace kind {bad[0]!r}; choose from hidden, mlp, attn")


def trace(model, prompt: str, subject: str, answer: str | None = None,
          kinds: Sequence[Kind] = KINDS, samples: int = 10, noise: float = 3.0, window: int = 10,
          seed: int = 1, memory_budget: float | None = None, trim: bool = True,
          tokens: Sequence[int] | None = None) -> Trace:
    """Batched causal trace: every (token, layer) cell of every kind.

    ``tokens`` restricts the restored tokens (their rows of the grid; the other rows
    stay 0): ROME's layer choice needs only the last subject token's row.

    With ``trim`` (default) a restore at token ``t`` runs positions ``t…`` only: earlier
    positions are unchanged by it, so their keys and values come from the noised run
    through a prefix KV cache. One pass per token then holds every cell of that token
    (all noise samples as rows), appended at its first restored layer. A model with sliding-window
    layers (Gemma 3) runs whole sequences: its KV cache keeps only each window, so a prefix cache
    cannot stand in for the positions before ``t``.
    """
    _check(model, samples, window, kinds)
    check_trace_size(model, len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"]), samples, len(kinds))
    t0 = time.perf_counter()
    setup = _prepare(model, prompt, subject, answer, samples, noise, seed, kinds)
    n, n_tok = model.cfg.n_layers, setup.tokens.shape[1]
    if trim and any(sliding_windows(model)):
        trim = False
    if trim:
        prefix = _noised_cache(model, setup)
        if prefix is None:
            trim = False  # a model without a Hugging Face KV cache: run whole sequences
    grid = torch.zeros(len(kinds), n_tok, n)
    corrupt, per_pass = None, None
    restored = range(n_tok) if tokens is None else [check_index(t, n_tok, "token") for t in tokens]
    bar = progress(total=len(kinds) * len(restored) * n, desc="tracing", unit="cell", leave=False)
    # A restore at token t runs positions t.., so rows shrink along the prompt: time the first row and
    # scale by its share of the positions run.
    row_lengths = [n_tok - t for t in restored] if trim else [n_tok]
    estimate = Estimate(f"causal trace of {n_tok} tokens x {n} layers", len(row_lengths), "token rows",
                        "a shorter prompt costs quadratically less")
    for t in restored if trim else [None]:
        cells = [(k, tt, l) for k in kinds for tt in ([t] if trim else restored) for l in range(n)]
        starts = [min(int(h.split(".")[1]) for h, _ in _batched_restores(k, tt, l, window, n))
                  for k, tt, l in cells]
        order = sorted(range(len(cells)), key=lambda i: starts[i])
        cells, starts = [cells[i] for i in order], [starts[i] for i in order]
        per_pass = cells_per_pass(model, samples, n_tok - (t or 0), memory_budget)
        i = 0
        while i < len(cells):
            chunk = slice(i, i + per_pass)
            try:
                probs = _run_cells(model, setup, cells[chunk], starts[chunk], window, t, prefix if trim else None)
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if not is_oom(err) or per_pass == 1:
                    raise
                per_pass = max(1, per_pass // 2)
                free_memory(model)
                continue
            probs = probs.view(-1, samples).mean(1)
            corrupt = probs[0].item()
            for (kind, tt, l), p in zip(cells[chunk], probs[1:].tolist()):
                grid[kinds.index(kind), tt, l] = p
            i += per_pass
            bar.update(len(cells[chunk]))
        estimate.done(1, share=row_lengths[0] / sum(row_lengths))
    bar.close()
    return Trace({k: grid[j] for j, k in enumerate(kinds)}, str_tokens(model, setup.tokens[0]), subject,
                 setup.span, setup.answer, setup.clean_prob, corrupt, samples, setup.scale, window,
                 time.perf_counter() - t0, extra={"cells_per_pass": per_pass, "trimmed": trim})


def _noised_cache(model, setup: _Setup):
    """The noised run's keys and values (one row per sample), or None without an HF cache."""
    base = setup.tokens.repeat(setup.noise.shape[0], 1)
    try:
        with torch.no_grad(), model.hooks(fwd_hooks=[_noise_hook(setup)]):
            out = model.original_model(base, use_cache=True)
        cache = out.past_key_values
        return cache if cache is not None and hasattr(cache, "layers") else None
    except Exception:
        return None


def _prefix_cache(model, prefix, t: int, rows: list[int]):
    """Layer ``l`` holds the noised samples' keys/values of positions ``< t`` for each of its
    ``rows[l]`` rows (row ``r`` is a copy of sample ``r mod samples``)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.original_model.config)
    for l, layer in enumerate(prefix.layers):
        reps = rows[l] // layer.keys.shape[0]
        cache.update(layer.keys[:, :, :t].repeat(reps, 1, 1, 1), layer.values[:, :, :t].repeat(reps, 1, 1, 1), l)
    return cache


@contextlib.contextmanager
def _bridge_builds_masks(model):
    """Let the bridge's attention build its rectangular causal mask for a prefix cache.

    Hugging Face would build a 4D mask whose batch is the *input* batch, which cannot
    broadcast once rows are appended mid-forward. Its flash-attention setting makes it
    build none; the bridge then masks causally with the cache offset itself. Only the
    mask is affected: the bridge computes attention on its own."""
    config = model.original_model.config
    saved = config._attn_implementation
    config._attn_implementation = "flash_attention_2"
    try:
        yield
    finally:
        config._attn_implementation = saved


def _run_cells(model, setup: _Setup, cells, starts, window: int, t: int | None, prefix) -> Tensor:
    """P(answer) of the base rows (the noised samples) and of each cell's copies, in one
    forward pass; trimmed to positions ``t…`` when ``t`` is given."""
    n = model.cfg.n_layers
    offset = t or 0
    base = setup.tokens[:, offset:].repeat(setup.noise.shape[0], 1)
    noise = setup.noise
    n_base = base.shape[0]
    restores = [_batched_restores(kind, token, layer, window, n) for kind, token, layer in cells]
    order, starts, sources, restores = _branch(cells, list(starts), restores)
    by_hook: dict[str, list[tuple[int, int]]] = {}  # hook -> (first row, token)
    for c, cell_restores in enumerate(restores):
        for hook, tok in cell_restores:
            by_hook.setdefault(hook, []).append((n_base * (c + 1), tok))

    n_pos = base.shape[1]

    def restore(name: str):
        rows = torch.tensor([r + s for r, _ in by_hook[name] for s in range(n_base)])
        toks = torch.tensor([tok for _, tok in by_hook[name] for _ in range(n_base)])
        value = setup.clean[_clean_key(name)][0]

        def hook(x, *, hook):
            # x may hold only the last positions (the last MLP runs on the last one alone): a
            # restore at an earlier position there cannot reach the scored position, so it is dropped.
            pos = toks - offset - (n_pos - x.shape[1])
            keep = pos >= 0
            x[rows[keep].to(x.device), pos[keep].to(x.device)] = value[toks[keep].to(value.device)]
            return x

        return hook

    a, b = setup.span

    def add_noise(x, *, hook):  # the subject positions inside this pass's window
        lo = max(a, offset)
        if lo < b:
            x = x.clone()
            x[:, lo - offset:b - offset] += noise[:, lo - a:b - a]
        return x

    hooks = [(name, restore(name)) for name in by_hook]
    last_mlp = f"blocks.{n - 1}.ln2.hook_in"
    if last_mlp in model.hook_dict:  # only the last position is scored: the last MLP runs on it alone
        hooks.append((last_mlp, lambda x, *, hook: x[:, -1:]))
    noise_hook = [("hook_embed", add_noise)]
    if not t:
        logits = forward_with_cells(model, base, starts, hooks, base_hooks=noise_hook, sources=sources)
    else:
        cache = _prefix_cache(model, prefix, t, rows_at_layers(n_base, starts, n))
        with _bridge_builds_masks(model):
            logits = forward_with_cells(model, base, starts, hooks, base_hooks=noise_hook, sources=sources,
                                        past_key_values=cache, use_cache=True)
    probs = logits.float().softmax(-1)[:, setup.answer_id].cpu().view(-1, n_base)
    back = [0] + [1 + order.index(c) for c in range(len(cells))]  # rows back in the callers' cell order
    return probs[back].reshape(-1)


def _branch(cells, starts: list[int], restores: list[list[tuple[str, int]]]):
    """Cells that share another cell's restores up to some block run as a branch of it from there.

    At the bottom edge the MLP and attention windows are clipped to start at block 0: the cells of
    one token and kind at layers 0…w/2 restore blocks 0…e−1 for growing e, so each equals the
    longest of them (the trunk) until its own window ends, and copies the trunk's rows at that block
    rather than running blocks 0…e−1 itself. Returns the cells' order (sorted by start), and in that
    order their starts, the cell each branches off (None: the base rows) and their own restores."""
    def layer(hook: str) -> int:
        return int(hook.split(".")[1])

    groups: dict[tuple, list[int]] = {}
    for c, (kind, token, _) in enumerate(cells):
        if kind in ("mlp", "attn") and restores[c]:
            groups.setdefault((kind, token, starts[c]), []).append(c)
    source: dict[int, int] = {}
    for members in groups.values():
        trunk = max(members, key=lambda c: len(restores[c]))
        for c in members:
            end = layer(restores[c][-1][0]) + 1
            below = [r for r in restores[trunk] if layer(r[0]) < end]
            if len(restores[c]) < len(restores[trunk]) and below == restores[c]:
                source[c], starts[c], restores[c] = trunk, end, []
    order = sorted(range(len(cells)), key=lambda c: starts[c])
    position = {c: i for i, c in enumerate(order)}
    return (order, [starts[c] for c in order], [position.get(source.get(c, -1)) for c in order],
            [restores[c] for c in order])


def trace_loop(model, prompt: str, subject: str, answer: str | None = None,
               kinds: Sequence[Kind] = KINDS, samples: int = 10, noise: float = 3.0, window: int = 10,
               seed: int = 1) -> Trace:
    """ROME's structure: one forward of ``samples + 1`` rows (row 0 clean) per cell, restoring
    row 0's state into the noised rows. The reference for :func:`trace`."""
    _check(model, samples, window, kinds)
    check_trace_size(model, len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"]), samples, len(kinds))
    t0 = time.perf_counter()
    setup = _prepare(model, prompt, subject, answer, samples, noise, seed, kinds)
    n, n_tok = model.cfg.n_layers, setup.tokens.shape[1]
    batch = setup.tokens.repeat(samples + 1, 1)
    a, b = setup.span

    def noise_rows(x, *, hook):
        x = x.clone()
        x[1:, a:b] += setup.noise
        return x

    def run(restores: list[tuple[str, int]]) -> float:
        def put(x, *, hook, tok):
            x[1:, tok] = x[0, tok]
            return x

        hooks = [("hook_embed", noise_rows)] + [(h, lambda x, *, hook, tok=t: put(x, hook=hook, tok=tok))
                                                for h, t in restores]
        with torch.no_grad():
            logits = model.run_with_hooks(batch, fwd_hooks=hooks)[:, -1]
        return logits[1:].float().softmax(-1)[:, setup.answer_id].mean().item()

    corrupt = run([])
    scores = {}
    for kind in kinds:
        grid = torch.empty(n_tok, n)
        for t in range(n_tok):
            for l in range(n):
                grid[t, l] = run(_restores(kind, t, l, window, n))
        scores[kind] = grid
    return Trace(scores, str_tokens(model, setup.tokens[0]), subject, setup.span, setup.answer,
                 setup.clean_prob, corrupt, samples, setup.scale, window, time.perf_counter() - t0)
