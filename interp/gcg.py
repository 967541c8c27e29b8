"""Greedy Coordinate Gradient (Zou et al. 2023): optimise a span of prompt tokens.

Each step, from the best string so far:

1. the gradient of the loss with respect to the one-hot token vectors of the optimised span
   (a matrix ``[span, vocab]``), taken through the embedding;
2. for each position, the ``topk`` tokens with the most negative gradient, among the allowed
   tokens (never special tokens; ASCII and printable by default);
3. ``search_width`` candidates, each replacing ``n_replace`` random positions with random
   tokens of their top-k lists; a candidate is kept only if its text re-tokenises to itself;
4. every candidate's loss exactly, in batches, reusing the key/value cache of the prompt
   before the span; the best enters a buffer of the ``buffer_size`` best strings, kept sorted,
   whose head is the next step's base.

The span sits wherever ``{optim}`` stands in the prompt (inside a chat template with
``chat=True``). Objectives are functions of the logits or of cached activations: the NLL
of a target (with an early stop once every target token is the argmax), an SAE feature's
activation, a neuron or a residual direction (a probe's weight vector with its bias is
one), or a weighted sum. An optional fluency term adds λ times the span's own NLL under the
model (EPO's self-perplexity); :func:`fluency_sweep` traces the activation/fluency front
over λ. ``prompts`` may hold several prompts: one span optimised for all (universal mode).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from interp._batching import bind
from interp.errors import InterpError
from interp.progress import progress

__all__ = ["GCGConfig", "GCGResult", "Objective", "allowed_tokens", "direction_objective", "feature_objective",
    "fluency_sweep", "gcg", "onehot_gradient", "target_objective", "weighted_objective"]

SLOT = "{optim}"


@dataclass
class GCGConfig:
    steps: int = 250
    search_width: int = 512
    topk: int = 256
    n_replace: int = 1
    buffer_size: int = 4
    optim_init: str = " x" * 20
    allow_non_ascii: bool = False
    early_stop: bool = True
    fluency: float = 0.0
    """λ: weight of the optimised span's own NLL (nats per token)."""
    batch_size: int = 128
    """Candidates per forward pass."""
    seed: int = 0


@dataclass
class Objective:
    """``loss(logits, acts, layout) -> [batch]``, to minimise. ``hooks``: the activations it reads."""

    name: str
    loss: Callable[[Tensor, dict, "_Layout"], Tensor]
    hooks: tuple[str, ...] = ()
    target: str | None = None
    """For the target objective: the text whose argmax match stops the search early."""


@dataclass
class _Layout:
    """One prompt: ``before`` (cached) + span + ``after`` + ``target``; positions index the
    sequence after ``before``."""

    before: Tensor
    after: Tensor
    target: Tensor
    n_optim: int

    @property
    def last_prompt(self) -> int:
        """Position of the prompt's last token (before the target)."""
        return self.n_optim + len(self.after) - 1


def target_objective(model, target: str) -> Objective:
    """Mean NLL of ``target``'s tokens after the prompt."""
    ids = model.tokenizer.encode(target, add_special_tokens=False)
    if not ids:
        raise InterpError(f"the target {target!r} tokenizes to nothing")

    def loss(logits, acts, lay: _Layout) -> Tensor:
        start = lay.last_prompt
        pred = logits[:, start:start + len(lay.target)].float()
        return torch.nn.functional.cross_entropy(pred.transpose(1, 2), lay.target[None].expand(len(pred), -1)
                                                 .to(pred.device), reduction="none").mean(1)

    return Objective(f"NLL of {target!r}", loss, target=target)


def direction_objective(hook: str, vector: Tensor, bias: float = 0.0, position: int | None = None,
                        name: str | None = None) -> Objective:
    """Maximise ``act · vector + bias`` at ``hook`` (default: the prompt's last position). A neuron
    is a one-hot vector; a probe is its weight vector and bias."""
    vector = vector.detach().float()

    def loss(logits, acts, lay: _Layout) -> Tensor:
        pos = lay.last_prompt if position is None else position
        return -(acts[hook][:, pos].float() @ vector.to(acts[hook].device) + bias)

    return Objective(name or f"direction at {hook}", loss, (hook,))


def feature_objective(sae, feature: int, position: int | None = None, pre: bool = True) -> Objective:
    """Maximise SAE ``feature`` at its hook (default: the prompt's last position). With ``pre`` (the
    default) the encoder's pre-activation is maximised: a ReLU or TopK feature is zero, and flat,
    on most strings, so its activation alone gives no gradient to start from; the activation rises
    with the pre-activation once the feature fires."""
    d_sae = sae.W_dec.shape[0]
    if not 0 <= feature < d_sae:
        raise InterpError(f"feature {feature} is out of range: the SAE has {d_sae} (valid 0..{d_sae - 1})")
    hook = sae.cfg.hook_name

    def loss(logits, acts, lay: _Layout) -> Tensor:
        pos = lay.last_prompt if position is None else position
        x = acts[hook][:, pos].to(sae.W_dec.dtype)
        value = sae.pre_acts(x) if pre else sae.encode(x)
        return -value[:, feature].float()

    return Objective(f"SAE feature {feature} {'pre-activation ' if pre else ''}at {hook}", loss, (hook,))


def weighted_objective(parts: Sequence[tuple[float, Objective]]) -> Objective:
    """``Σ w · objective``."""
    hooks = tuple(dict.fromkeys(h for _, o in parts for h in o.hooks))
    target = next((o.target for _, o in parts if o.target), None)
    return Objective(" + ".join(f"{w:g}·{o.name}" for w, o in parts),
                     lambda logits, acts, lay: sum(w * o.loss(logits, acts, lay) for w, o in parts), hooks, target)


_ALLOWED: dict[tuple[int, bool], Tensor] = {}


def allowed_tokens(tokenizer, allow_non_ascii: bool = False) -> Tensor:
    """Bool ``[vocab]``: not special, decodes to something, and ASCII-printable unless allowed
    (computed once per tokenizer)."""
    key = (id(tokenizer), allow_non_ascii)
    if key not in _ALLOWED:
        _ALLOWED[key] = _allowed(tokenizer, allow_non_ascii)
    return _ALLOWED[key]


def _allowed(tokenizer, allow_non_ascii: bool) -> Tensor:
    vocab = len(tokenizer)
    ok = torch.ones(vocab, dtype=torch.bool)
    for i in tokenizer.all_special_ids:
        if i < vocab:
            ok[i] = False
    for i, s in enumerate(tokenizer.batch_decode([[i] for i in range(vocab)])):
        if not s or (not allow_non_ascii and not (s.isascii() and s.isprintable())):
            ok[i] = False
    return ok


@dataclass
class GCGResult:
    best_string: str
    best_ids: list[int]
    best_loss: float
    losses: list[float]
    """Best loss so far after each step (never rises)."""
    step_losses: list[float]
    """The best candidate's loss of each step."""
    strings: list[str]
    """The best string so far after each step."""
    times: list[float]
    """Seconds since the start, after each step."""
    success: bool
    """For a target: every target token is the argmax after the best string."""
    objective: str
    seconds: float
    extra: dict = field(default_factory=dict)

    def figure(self):
        """Best loss so far and each step's best candidate, against the step (:func:`interp.figures.gcg_figure`)."""
        from interp.figures import gcg_figure

        return gcg_figure(self)


def _split(model, prompt: str, chat: bool) -> tuple[str, str]:
    if prompt.count(SLOT) != 1:
        raise InterpError(f"the prompt needs exactly one {SLOT} where the optimised string goes "
                          f"(found {prompt.count(SLOT)}): {prompt!r}")
    if chat:
        text = model.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)
        before, after = text.split(SLOT)
        return before, after
    before, after = prompt.split(SLOT)
    return before, after


def _encode(model, text: str, bos: bool) -> Tensor:
    ids = model.tokenizer.encode(text, add_special_tokens=False) if text else []
    if bos and getattr(model.cfg, "default_prepend_bos", False) and model.tokenizer.bos_token_id is not None:
        ids = [model.tokenizer.bos_token_id] + ids
    return torch.tensor(ids, dtype=torch.long)


def _prefix(model, before: Tensor) -> tuple[object | None, Tensor | None]:
    """The key/value cache of the tokens before the span, and their last logits (which predict the
    span's first token, for the fluency term); ``(None, None)`` when nothing comes before."""
    if len(before) == 0:
        return None, None
    with torch.no_grad():
        out = model.original_model(input_ids=before[None].to(model.cfg.device), use_cache=True)
    return out.past_key_values, out.logits[0, -1]


def _expand(model, prefix, rows: int):
    if prefix is None:
        return None
    import copy

    # A copy of the prefix's own cache, not a new one filled by update(): a sliding-window layer
    # (Gemma 3) keeps only its window and counts the tokens it has seen, which a refill would lose.
    cache = copy.deepcopy(prefix)
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1)
    return cache


def _forward(model, lay: _Layout, prefix, ids: Tensor | None = None, embeds: Tensor | None = None,
             hooks: Sequence[str] = ()) -> tuple[Tensor, dict, Tensor | None]:
    """Logits over span + after + target for each row, the hooks' activations, and the prefix's
    last logits (for the fluency term)."""
    hf = model.original_model
    device = model.cfg.device
    rows = len(ids) if ids is not None else len(embeds)
    rest = torch.cat([lay.after, lay.target]).to(device)
    acts: dict[str, Tensor] = {}

    def grab(x, *, hook, name):
        acts[name] = x  # under the requested name (the bridge may call the hook point by another)
        return x

    kwargs = {"past_key_values": _expand(model, prefix, rows), "use_cache": prefix is not None}
    with model.hooks(fwd_hooks=[(h, bind(grab, name=h)) for h in hooks]):
        if embeds is not None:
            emb = hf.get_input_embeddings()(rest)[None].expand(rows, -1, -1)
            logits = hf(inputs_embeds=torch.cat([embeds, emb], 1), **kwargs).logits
        else:
            full = torch.cat([ids.to(device), rest[None].expand(rows, -1)], 1)
            logits = hf(input_ids=full, **kwargs).logits
    return logits, acts


def _fluency(logits: Tensor, span: Tensor, first: Tensor | None) -> Tensor:
    """Mean NLL of the span's tokens under the model: ``first`` predicts its first token (None
    when the span opens the text: that token is not scored)."""
    n = span.shape[1]
    pred = logits[:, :n - 1].float()
    nll = torch.nn.functional.cross_entropy(pred.transpose(1, 2), span[:, 1:].to(pred.device), reduction="none")
    if first is not None:
        lp = first.float().log_softmax(-1).to(pred.device)
        nll = torch.cat([-lp[span[:, 0].to(pred.device)][:, None], nll], 1)
    return nll.mean(1)


def onehot_gradient(model, lay: _Layout, prefix, span: Tensor, objective: Objective, fluency: float = 0.0,
                    first_logits: Tensor | None = None) -> Tensor:
    """∂loss/∂one-hot ``[span, vocab]`` at ``span`` (1-D token ids)."""
    emb = model.original_model.get_input_embeddings().weight
    onehot = torch.nn.functional.one_hot(span.to(emb.device), emb.shape[0]).to(emb.dtype).requires_grad_(True)
    with torch.enable_grad():
        logits, acts = _forward(model, lay, prefix, embeds=(onehot @ emb)[None], hooks=objective.hooks)
        loss = objective.loss(logits, acts, lay)
        if fluency:
            loss = loss + fluency * _fluency(logits, span[None], first_logits)
        (grad,) = torch.autograd.grad(loss.sum(), onehot)
    return grad


def _sample(span: Tensor, grad: Tensor, allowed: Tensor, width: int, topk: int, n_replace: int,
            gen: torch.Generator) -> Tensor:
    """``[width, span]`` candidates: ``n_replace`` random positions each take a random token of that
    position's top-k (most negative gradient) allowed tokens."""
    g = grad.float().cpu().masked_fill(~allowed[None], float("inf"))
    top = (-g).topk(topk, dim=1).indices  # [span, topk]
    n = span.shape[0]
    pos = torch.rand(width, n, generator=gen).argsort(1)[:, :n_replace]  # distinct positions per candidate
    choice = torch.randint(0, topk, (width, n_replace), generator=gen)
    cand = span.cpu().repeat(width, 1)
    cand.scatter_(1, pos, top[pos, choice])
    return cand


def _retokenizes(tokenizer, cand: Tensor) -> Tensor:
    keep = []
    for row in cand.tolist():
        keep.append(tokenizer.encode(tokenizer.decode(row), add_special_tokens=False) == row)
    return torch.tensor(keep, dtype=torch.bool)


def gcg(model, prompts: str | Sequence[str], objective: Objective | Sequence[Objective],
        config: GCGConfig | None = None, chat: bool = False,
        on_step: Callable[[int, float, str], None] | None = None) -> GCGResult:
    """Optimise the ``{optim}`` span of ``prompts`` (one, or several for a universal string) to
    minimise ``objective`` (one per prompt, or one for all). ``on_step(step, best_loss, best_string)``
    is called after every step (the explorer draws its live loss curve from it)."""
    cfg = config or GCGConfig()
    t0 = time.perf_counter()
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    objectives = list(objective) if isinstance(objective, (list, tuple)) else [objective] * len(prompts)
    if len(objectives) != len(prompts):
        raise InterpError(f"{len(prompts)} prompts need one objective or {len(prompts)} (got {len(objectives)})")
    tok = model.tokenizer
    allowed = allowed_tokens(tok, cfg.allow_non_ascii)
    n_allowed = int(allowed.sum())
    if cfg.topk > n_allowed or cfg.search_width > n_allowed:
        raise InterpError(f"search width {cfg.search_width} and top-k {cfg.topk} must not exceed the {n_allowed} "
                          "tokens left after filtering special and non-ASCII tokens")
    span = torch.tensor(tok.encode(cfg.optim_init, add_special_tokens=False))
    if len(span) == 0:
        raise InterpError(f"the initial string {cfg.optim_init!r} tokenizes to nothing")
    layouts, prefixes, firsts = [], [], []
    for prompt, obj in zip(prompts, objectives):
        before, after = _split(model, prompt, chat)
        target = torch.tensor(tok.encode(obj.target, add_special_tokens=False) if obj.target else [], dtype=torch.long)
        lay = _Layout(_encode(model, before, True), _encode(model, after, False), target, len(span))
        layouts.append(lay)
        prefix, first = _prefix(model, lay.before)
        prefixes.append(prefix)
        firsts.append(first)
    gen = torch.Generator().manual_seed(cfg.seed)

    def evaluate(cands: Tensor) -> tuple[Tensor, Tensor]:
        """Loss of each candidate, and whether each meets every target."""
        total = torch.zeros(len(cands))
        hit = torch.ones(len(cands), dtype=torch.bool)
        for lay, prefix, obj, first in zip(layouts, prefixes, objectives, firsts):
            for i in range(0, len(cands), cfg.batch_size):
                chunk = cands[i:i + cfg.batch_size]
                with torch.no_grad():
                    logits, acts = _forward(model, lay, prefix, ids=chunk, hooks=obj.hooks)
                    loss = obj.loss(logits, acts, lay)
                    if cfg.fluency:
                        loss = loss + cfg.fluency * _fluency(logits, chunk, first)
                total[i:i + len(chunk)] += loss.float().cpu()
                if obj.target:
                    s = lay.last_prompt
                    pred = logits[:, s:s + len(lay.target)].argmax(-1).cpu()
                    hit[i:i + len(chunk)] &= (pred == lay.target[None]).all(1)
                else:
                    hit[i:i + len(chunk)] = False
        return total / len(layouts), hit

    loss0, hit0 = evaluate(span[None])
    buffer = [(loss0.item(), span, bool(hit0[0]))]
    losses, step_losses, strings, times = [], [], [], []
    bar = progress(range(cfg.steps), desc="GCG", unit="step")
    for _ in bar:
        base = buffer[0][1]
        grad = sum(onehot_gradient(model, lay, prefix, base, obj, cfg.fluency, first)
                   for lay, prefix, obj, first in zip(layouts, prefixes, objectives, firsts))
        cands = _sample(base, grad, allowed, cfg.search_width, cfg.topk, cfg.n_replace, gen)
        cands = cands[_retokenizes(tok, cands)]
        if len(cands) == 0:
            print("interp: warning: no candidate re-tokenised to itself this step; sampling again", file=sys.stderr)
            continue
        loss, hit = evaluate(cands)
        best = int(loss.argmin())
        step_losses.append(loss[best].item())
        entry = (loss[best].item(), cands[best], bool(hit[best]))
        if len(buffer) < cfg.buffer_size or entry[0] < buffer[-1][0]:
            buffer = sorted(buffer + [entry], key=lambda e: e[0])[:cfg.buffer_size]
        losses.append(buffer[0][0])
        strings.append(tok.decode(buffer[0][1].tolist()))
        times.append(time.perf_counter() - t0)
        bar.set_postfix(loss=f"{buffer[0][0]:.3f}")
        if on_step is not None:
            on_step(len(losses), losses[-1], strings[-1])
        if cfg.early_stop and buffer[0][2]:
            break
    bar.close()
    loss_b, ids_b, hit_b = buffer[0]
    return GCGResult(tok.decode(ids_b.tolist()), ids_b.tolist(), loss_b, losses, step_losses, strings, times, hit_b,
                     objectives[0].name, time.perf_counter() - t0,
                     {"initial_loss": loss0.item(), "steps_run": len(losses)})


def fluency_sweep(model, prompt: str, objective: Objective, lambdas: Sequence[float], config: GCGConfig | None = None
                  ) -> list[dict]:
    """EPO's trade-off: for each λ, the best string and its objective and fluency (mean NLL per
    span token); ``pareto`` marks the points no other point beats on both."""
    base = config or GCGConfig()
    points = []
    for lam in lambdas:
        cfg = GCGConfig(**{**base.__dict__, "fluency": lam, "early_stop": False})
        res = gcg(model, prompt, objective, cfg)
        ids = torch.tensor(res.best_ids)
        before, after = _split(model, prompt, False)
        lay = _Layout(_encode(model, before, True), _encode(model, after, False), torch.tensor([], dtype=torch.long),
                      len(ids))
        prefix, first = _prefix(model, lay.before)
        with torch.no_grad():
            logits, acts = _forward(model, lay, prefix, ids=ids[None], hooks=objective.hooks)
            obj = objective.loss(logits, acts, lay).item()
            flu = _fluency(logits, ids[None], first).item()
        points.append({"lambda": lam, "string": res.best_string, "objective": obj, "fluency_nll": flu})
    for p in points:
        p["pareto"] = not any(q["objective"] <= p["objective"] and q["fluency_nll"] <= p["fluency_nll"]
                              and (q["objective"], q["fluency_nll"]) != (p["objective"], p["fluency_nll"])
                              for q in points)
    return points
