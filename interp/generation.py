"""Text generation under hooks, with a KV cache: the one helper every caller uses.

ROME's ``--generate`` and fluency texts, steering curves, feature steering,
automated interpretability and GCG's success checks all continue prompts while
hooks are attached. :func:`generate` runs the hooked model itself (the bridge's
``original_model``, whose modules carry the hook points), so every hook fires on
every forward pass:

- the prompt is one forward pass over all its positions (prefill);
- each new token is one forward pass over that position alone, reading the keys
  and values of earlier positions from the cache.

A hook that adds to the residual stream therefore applies to every position once,
as it does in uncached generation; greedy tokens equal those of the uncached loop
(tested on both tiny architectures and the embedded model). A hook that indexes
positions (``resid[:, 5]``) sees one position per step under the cache: pass
``use_cache=False`` for those.

Prompts of different lengths are batched with left padding, an attention mask and
position ids counted from each prompt's first real token, so a prompt's text does not
depend on which others share its batch. Sampling draws from a generator per prompt,
seeded ``seed + i``, for the same reason.
"""

from __future__ import annotations

import inspect
from typing import Callable, Literal, Sequence

import torch

from interp.errors import InterpError
from interp.progress import progress
from interp.tokens import to_tokens

__all__ = ["generate", "generate_ids", "left_pad"]

Mode = Literal["greedy", "sample"]


def generate(model, prompts: str | Sequence[str], max_new_tokens: int = 30, *, mode: Mode = "greedy",
             top_k: int = 20, temperature: float = 1.0, seed: int = 0, batch_size: int = 16,
             stop_at_eos: bool = True, use_cache: bool = True, seeds: Sequence[int] | None = None,
             on_batch: Callable[[list[int]], None] | None = None) -> str | list[str]:
    """Continuations of ``prompts`` (the text after each prompt; a string for a string).

    ``mode="greedy"`` takes the most likely token; ``mode="sample"`` samples from the
    ``top_k`` most likely at ``temperature``, seeded per prompt. Hooks attached to the
    model (``model.hooks(...)``, :func:`interp.representations.steering.steer`) apply throughout.
    """
    single = isinstance(prompts, str)
    ids = generate_ids(model, [prompts] if single else prompts, max_new_tokens, mode=mode, top_k=top_k,
                       temperature=temperature, seed=seed, batch_size=batch_size, stop_at_eos=stop_at_eos,
                       use_cache=use_cache, seeds=seeds, on_batch=on_batch)
    texts = [model.tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    return texts[0] if single else texts


@torch.no_grad()
def generate_ids(model, prompts: Sequence[str], max_new_tokens: int = 30, *, mode: Mode = "greedy",
                 top_k: int = 20, temperature: float = 1.0, seed: int = 0, batch_size: int = 16,
                 stop_at_eos: bool = True, use_cache: bool = True, seeds: Sequence[int] | None = None,
                 on_batch: Callable[[list[int]], None] | None = None) -> list[list[int]]:
    """New token ids of each prompt: ``max_new_tokens`` of them, or fewer when ``stop_at_eos``
    ends a row at the end-of-sequence token (which is kept).

    ``seeds`` gives each prompt its sampling seed (default ``seed + i``); ``on_batch(indices)`` is
    called before each forward batch with the prompt indices of its rows, in row order, so that a
    hook can treat rows differently (feature steering generates steered and unsteered copies of
    its prompts in one batch)."""
    prompts = list(prompts)
    if not prompts:
        return []
    if mode not in ("greedy", "sample"):
        raise InterpError(f"generation mode {mode!r}: use 'greedy' or 'sample'")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size), ("top_k", top_k)):
        if not isinstance(value, int) or value < 1:
            raise InterpError(f"{name} must be a positive integer, got {value!r}")
    if not temperature > 0:
        raise InterpError(f"temperature must be positive, got {temperature!r}")
    rows = [to_tokens(model, p)[0].tolist() for p in prompts]
    n_ctx = getattr(model.cfg, "n_ctx", None)
    longest = max(map(len, rows))
    if n_ctx and longest + max_new_tokens > n_ctx:
        raise InterpError(f"a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds the "
                          f"model's context of {n_ctx}")
    seeds = [seed + i for i in range(len(rows))] if seeds is None else list(seeds)
    if len(seeds) != len(rows):
        raise InterpError(f"{len(seeds)} seeds for {len(rows)} prompts")
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # similar lengths share a batch: less padding
    out: list[list[int]] = [[] for _ in rows]
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for chunk in progress(chunks, desc="generating", unit="batch", disable=len(chunks) < 3):
        if on_batch is not None:
            on_batch(list(chunk))
        new = _decode(model, [rows[i] for i in chunk], [seeds[i] for i in chunk], max_new_tokens, mode,
                      top_k, temperature, stop_at_eos, use_cache)
        for i, ids in zip(chunk, new):
            out[i] = ids
    return out


def left_pad(rows: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows of different lengths as one batch padded on the left, and its attention mask."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        ids[b, width - len(row):] = torch.tensor(row, device=device)
        mask[b, width - len(row):] = 1
    return ids, mask


def _decode(model, rows: list[list[int]], seeds: list[int], n: int, mode: Mode, top_k: int,
            temperature: float, stop_at_eos: bool, use_cache: bool) -> list[list[int]]:
    hf = model.original_model
    device = model.cfg.device
    eos = model.tokenizer.eos_token_id
    pad = eos if eos is not None else 0
    ids, mask = left_pad(rows, pad, device)
    generators = None
    if mode == "sample":
        generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    keep = {"logits_to_keep": 1} if _accepts(hf, "logits_to_keep") else {}
    cache = _new_cache() if use_cache else None
    new = torch.empty((len(rows), 0), dtype=torch.long, device=device)
    done = torch.zeros(len(rows), dtype=torch.bool, device=device)
    for step in range(n):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if use_cache:
            fresh = ids if step == 0 else ids[:, -1:]
            out = hf(input_ids=fresh, attention_mask=mask, position_ids=positions[:, -fresh.shape[1]:],
                     past_key_values=cache, use_cache=True, **keep)
            cache = out.past_key_values
        else:
            out = hf(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, **keep)
        logits = out.logits[:, -1].float()
        token = _pick(logits, mode, top_k, temperature, generators)
        if stop_at_eos and eos is not None:
            token = torch.where(done, torch.full_like(token, pad), token)
            done = done | (token == eos)
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        new = torch.cat([new, token[:, None]], 1)
        if stop_at_eos and eos is not None and step % 4 == 3 and bool(done.all()):
            break
    result = []
    for row in new.tolist():
        if stop_at_eos and eos is not None and eos in row:
            row = row[:row.index(eos) + 1]
        result.append(row)
    return result


def _pick(logits: torch.Tensor, mode: Mode, top_k: int, temperature: float,
          generators: list[torch.Generator] | None) -> torch.Tensor:
    if mode == "greedy":
        return logits.argmax(-1)
    values, index = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(values / temperature, dim=-1)
    choice = torch.stack([torch.multinomial(p, 1, generator=g)[0] for p, g in zip(probs, generators)])
    return index.gather(-1, choice[:, None])[:, 0]


def _new_cache():
    from transformers import DynamicCache

    return DynamicCache()


def _accepts(module, name: str) -> bool:
    try:
        return name in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
