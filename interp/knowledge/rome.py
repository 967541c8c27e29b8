"""ROME: rank-one model editing (Meng et al. 2022, "Locating and Editing Factual
Associations in GPT"), on the hooked model, reversible bit for bit.

A request rewrites the object of a fact, ``(prompt template, subject, target)``:
``("{} is located in the city of", "The Eiffel Tower", " Rome")``. ROME views the
output projection ``W`` of the MLP at ``layer`` as a key-value memory and inserts
the pair (k*, v*) with the least disturbance to other keys (§3.1, Eq. 2):

    W' = W + Λ (C⁻¹ k*)ᵀ,   Λ = (v* − W k*) / ((C⁻¹ k*)ᵀ k*)

so that ``W' k* = v*``. (ROME's released code, our default, makes the update exact at
the rewrite prompt's own key instead: Λ = (v* − W k) / ((C⁻¹k*)ᵀ k); ``RomeConfig.update_key``
picks.) Here ``C = E[k kᵀ]`` over a corpus
(:mod:`interp.knowledge.covariance`); ``k*`` is the key at the subject's last token averaged
over the bare prompt and ~20 short prefixes the model itself writes (§3.1 "Step 1");
``v*`` is the MLP output at that token that makes the model say the target
(§3.1 "Step 2"):

    v* = v₀ + argmin_δ  mean_j −log P(target | prefix_j + prompt; δ)
                        + 0.0625 · KL(P(· | "{subject} is a") ‖ P(· | …; δ))
                        + 0.5 · ‖δ‖ / ‖v₀‖²,   ‖δ‖ ≤ 4 ‖v₀‖

with Adam at lr 0.5 for ≤ 20 steps (ROME's GPT-2 XL hyper-parameters). Targets of
several tokens are scored with teacher forcing.

Every :func:`edit` changes the weights in place, records itself on the model
(:func:`edits`) and returns an :class:`Edit` that undoes it exactly: a context
manager, and ``undo()``. Nothing here copies or restores weights behind the user's
back; ``Edit.active`` checks that the edited weights are still in place.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.cache import cache_dir, slug, write_json
from interp.knowledge.covariance import key_hook, key_moment
from interp.knowledge.edits import edits, is_edited
from interp.errors import InterpError, check_index
from interp.generation import generate_ids
from interp.progress import progress
from interp.tokens import right_pad, str_tokens, to_tokens
from interp.knowledge.tracing import fill_template, load_facts, subject_span, trace

__all__ = ["Edit", "RomeConfig", "check_request", "compute_key", "compute_value", "context_prefixes",
    "default_layer", "edit", "edits", "greedy", "is_edited", "out_proj", "rank_one_update",
    "templates"]

_PREFIX_STARTS = ["The", "Therefore", "Because", "I", "You", "In", "When", "It", "She", "We"]


@dataclass(frozen=True)
class RomeConfig:
    """Hyper-parameters of one edit (ROME's GPT-2 XL defaults where it has one)."""

    layer: int | None = None
    """MLP to edit; None picks the peak of the average MLP causal effect (:func:`default_layer`)."""
    v_steps: int = 20
    """Adam steps of the v* optimisation."""
    v_lr: float = 0.5
    kl_factor: float = 0.0625
    """Weight of the KL term that keeps "{subject} is a" predictions in place (essence drift)."""
    v_weight_decay: float = 0.5
    """Weight of the norm penalty ‖δ‖ / ‖v₀‖²."""
    clamp_norm_factor: float = 4.0
    """‖δ‖ is clamped to this multiple of ‖v₀‖ after every step."""
    n_prefixes: int = 20
    """Model-written prefixes (half of 5 tokens, half of 10) averaged over, besides the bare prompt."""
    early_stop_nll: float = 0.05
    """Stop optimising once the target's mean NLL is below this."""
    cov_tokens: int = 100_000
    """Corpus tokens behind C."""
    corpus: str | None = None
    """Corpus spec for C (None: the offline default)."""
    seed: int = 0
    """Seed of the prefix generation."""
    update_key: Literal["prompt", "mean"] = "prompt"
    """Key that Λ makes exact. ``prompt`` (ROME's released code): the rewrite prompt's own key, so
    ``W'k = v*`` there, with the direction C⁻¹k* from the mean key. ``mean``: the paper's Eq. 2,
    ``W'k* = v*`` for the mean key k*."""

    def __post_init__(self):
        if self.v_steps < 1 or self.v_lr <= 0 or self.n_prefixes < 0 or self.cov_tokens < 1:
            raise InterpError("ROME config needs v_steps >= 1, v_lr > 0, n_prefixes >= 0, cov_tokens >= 1")
        if self.update_key not in ("prompt", "mean"):
            raise InterpError(f"update_key must be 'prompt' or 'mean', not {self.update_key!r}")


@dataclass
class Edit:
    """One applied rank-one edit; ``undo()`` (or leaving its ``with`` block) reverts it bit-exactly."""

    prompt: str
    subject: str
    target: str
    layer: int
    k_star: Float[Tensor, " d_mlp"]
    """The mean key over the bare prompt and the prefixed ones; the update's direction is C⁻¹k*."""
    v_star: Float[Tensor, " d_model"]
    k_exact: Float[Tensor, " d_mlp"]
    """The key the update maps exactly to v* (the prompt's own, or k*; ``RomeConfig.update_key``)."""
    stats: dict
    """Optimisation and timing figures (JSON-ready)."""
    _model: nn.Module = field(repr=False)
    _weight: nn.Parameter = field(repr=False)
    _original: Tensor = field(repr=False)
    _edited: Tensor = field(repr=False)
    undone: bool = False

    @property
    def active(self) -> bool:
        """True while the model's weights are exactly those this edit wrote."""
        return not self.undone and torch.equal(self._weight.data, self._edited)

    @torch.no_grad()
    def undo(self) -> None:
        """Restore the weights this edit changed to their exact previous values."""
        if self.undone:
            return
        stack = edits(self._model)
        later = [e for e in stack[stack.index(self) + 1:] if e._weight is self._weight]
        if later:
            raise InterpError(f"undo the later edit(s) of layer {self.layer} first "
                              f"({', '.join(repr(e.subject) for e in later)}); edits of one layer undo in reverse order")
        if not torch.equal(self._weight.data, self._edited):
            raise InterpError(f"the weights of layer {self.layer} changed since the edit of {self.subject!r}; "
                              "refusing to overwrite them")
        self._weight.data.copy_(self._original)
        self.undone = True
        stack.remove(self)

    def __enter__(self) -> "Edit":
        return self

    def __exit__(self, *exc) -> None:
        self.undo()

    def summary(self) -> dict:
        return {"prompt": self.prompt, "subject": self.subject, "target": self.target, "layer": self.layer,
                "active": self.active, **self.stats}


def out_proj(model, layer: int) -> nn.Module:
    """The MLP's output projection: ``c_proj`` (Conv1D, weight ``[d_mlp, d_model]``) on GPT-2,
    ``down_proj`` (Linear, weight ``[d_model, d_mlp]``) on Llama; its input is ``mlp.hook_post``."""
    return model.blocks[layer].mlp.out.original_component


# ----------------------------------------------------------------- requests


def check_request(model, prompt: str, subject: str, target: str) -> tuple[str, list[int]]:
    """Validate a request; return the filled prompt and the target's token ids."""
    if not subject or not subject.strip():
        raise InterpError("empty subject")
    if not isinstance(prompt, str) or "{}" not in prompt:
        if isinstance(prompt, str) and subject in prompt:
            raise InterpError(f"prompt {prompt!r} has no '{{}}' where the subject goes; "
                              f"write it as the template {prompt.replace(subject, '{}', 1)!r}")
        raise InterpError(f"subject {subject!r} is not in the prompt {prompt!r}, which has no '{{}}' for it either")
    if prompt.count("{}") != 1:
        raise InterpError(f"prompt {prompt!r} must contain '{{}}' exactly once, where the subject goes")
    if not target or not target.strip():
        raise InterpError("empty target: give the new object, e.g. ' Rome'")
    text = fill_template(prompt, subject)
    subject_span(model, text, subject)
    target_ids = model.tokenizer.encode(target, add_special_tokens=False)
    current = greedy(model, text, len(target_ids))
    if current == target_ids:
        raise InterpError(f"the model already completes {text!r} with {target!r}; choose a different target")
    return text, target_ids


def greedy(model, text: str, n: int) -> list[int]:
    """The model's greedy continuation of ``text``, ``n`` tokens."""
    return generate_ids(model, [text], n, stop_at_eos=False)[0]


def context_prefixes(model, n: int = 20, seed: int = 0) -> list[str]:
    """``n`` short texts the model writes (half 5 tokens, half 10), cached per model (ROME §3.1)."""
    path = cache_dir("rome") / f"{slug(model.cfg.model_name)}-prefixes-{n}-{seed}.json"
    try:
        cached = json.loads(path.read_text())["prefixes"]
        if len(cached) == n:
            return cached
    except (OSError, json.JSONDecodeError, KeyError):
        pass
    gen = torch.Generator().manual_seed(seed)
    prefixes = []
    for i in range(n):
        length = 5 if i < n // 2 else 10
        start = _PREFIX_STARTS[i % len(_PREFIX_STARTS)]
        ids = to_tokens(model, start)
        with torch.no_grad():
            for _ in range(length):
                logits = model.original_model(ids).logits[0, -1].float()
                top = logits.topk(5)
                pick = top.indices[torch.multinomial(top.values.softmax(-1).cpu(), 1, generator=gen)]
                ids = torch.cat([ids, pick.view(1, 1).to(ids.device)], 1)
        text = model.tokenizer.decode(ids[0], skip_special_tokens=True)
        prefixes.append(" ".join(text.replace("{", "").replace("}", "").split()))
    write_json(path, {"prefixes": prefixes, "model": model.cfg.model_name, "seed": seed})
    return prefixes


def templates(model, prompt: str, config: RomeConfig) -> list[str]:
    """The bare prompt and each prefix followed by it."""
    return [prompt] + [f"{p}. {prompt}" for p in context_prefixes(model, config.n_prefixes, config.seed)]


# ----------------------------------------------------------------- layer choice


def default_layer(model, facts: list[dict] | None = None) -> dict:
    """The layer where restoring the MLP at the last subject token helps most, on average over
    the known facts (ROME §2, Fig. 2); cached per model for the shipped facts (a ``facts`` list is
    computed every time and never cached, so it cannot stand in for the default). Returns
    ``{"layer", "effect"}``."""
    path = cache_dir("rome") / f"{slug(model.cfg.model_name)}-layer.json"
    default = facts is None
    if default:
        try:
            cached = json.loads(path.read_text())
            if len(cached["effect"]) == model.cfg.n_layers:
                return cached
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    facts = load_facts() if facts is None else facts
    effects = []
    for f in progress(facts, desc="MLP effect by layer", unit="fact"):
        text = fill_template(f["template"], f["subject"])
        last = subject_span(model, text, f["subject"])[1] - 1
        tr = trace(model, text, f["subject"], f["answer"], kinds=("mlp",), tokens=[last])
        effects.append(tr.scores["mlp"][last] - tr.corrupt_prob)
    effect = torch.stack(effects).mean(0)
    result = {"layer": int(effect.argmax()), "effect": [round(float(e), 5) for e in effect],
              "facts": len(facts)}
    if default:
        write_json(path, result)
    return result


# ----------------------------------------------------------------- k* and v*


def _rows(model, texts: list[str], subject: str, extra: list[int]) -> tuple[list[list[int]], list[int]]:
    """Token ids of each text plus ``extra``, and each row's last subject token."""
    ids, last = [], []
    for t in texts:
        ids.append(to_tokens(model, t)[0].tolist() + extra)
        last.append(subject_span(model, t, subject)[1] - 1)
    return ids, last


@torch.no_grad()
def compute_key(model, layer: int, texts: list[str], subject: str) -> Float[Tensor, " d_mlp"]:
    """k*: the mean of ``mlp.hook_post`` at the last subject token over ``texts``."""
    ids, last = _rows(model, texts, subject, [])
    _, cache = model.run_with_cache(right_pad(model, ids), names_filter=key_hook(layer),
                                    stop_at_layer=layer + 1)
    keys = cache[key_hook(layer)][torch.arange(len(ids)), torch.tensor(last)]
    return keys.float().mean(0)


class _FrozenParams:
    """Autograd through the model without building graphs for its weights (restores the flags)."""

    def __init__(self, model):
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)


def compute_value(model, layer: int, texts: list[str], subject: str, target_ids: list[int],
                  config: RomeConfig) -> tuple[Float[Tensor, " d_model"], dict]:
    """v*: the MLP output at the last subject token that makes the model say the target."""
    rows, last = _rows(model, texts, subject, target_ids[:-1])
    n_rw = len(rows)
    kl_text = f"{subject} is a"
    kl_rows, kl_last = _rows(model, [kl_text], subject, [])
    tokens = right_pad(model, rows + kl_rows)
    subj_pos = torch.tensor(last + kl_last, device=tokens.device)
    # Positions whose logits are scored: each target token's predecessor, then the KL prompt's end.
    starts = [len(r) - len(target_ids) for r in rows]
    score_row = torch.tensor([j for j in range(n_rw) for _ in target_ids] + [n_rw], device=tokens.device)
    score_pos = torch.tensor([s + i for s in starts for i in range(len(target_ids))] + [len(kl_rows[0]) - 1],
                             device=tokens.device)
    target = torch.tensor(target_ids * n_rw, device=tokens.device)

    d_model = model.cfg.d_model
    delta = torch.zeros(d_model, device=tokens.device, requires_grad=True)
    state: dict = {}

    def add_delta(out, *, hook):
        if "v0" not in state:  # ROME's v₀: the unedited output at the bare prompt's subject token
            state["v0"] = out[0, last[0]].detach().float().clone()
        out = out.clone()
        out[torch.arange(out.shape[0], device=out.device), subj_pos] += delta.to(out.dtype)
        return out

    def gather(x, *, hook):
        return x[score_row, score_pos][:, None]

    opt = torch.optim.Adam([delta], lr=config.v_lr)
    kl_init = None
    history = []
    with _FrozenParams(model):
        for step in range(config.v_steps):
            logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.mlp.hook_out", add_delta),
                                                             ("unembed.hook_in", gather)])[:, 0].float()
            logp = logits.log_softmax(-1)
            nll = -logp[:-1].gather(1, target[:, None]).view(n_rw, len(target_ids)).mean(1).mean()
            kl_logp = logp[-1]
            if kl_init is None:
                kl_init = kl_logp.detach()
            kl = config.kl_factor * torch.sum(kl_init.exp() * (kl_init - kl_logp))
            v0 = state["v0"]
            decay = config.v_weight_decay * delta.norm() / v0.norm() ** 2
            loss = nll + kl + decay
            history.append(round(nll.item(), 4))
            if not torch.isfinite(loss):
                raise InterpError(f"v* optimisation diverged (non-finite loss at step {step}); the weights are "
                                  "untouched: try another layer or a smaller v_lr")
            if nll.item() < config.early_stop_nll or step == config.v_steps - 1:
                break
            (grad,) = torch.autograd.grad(loss, [delta])
            delta.grad = grad
            opt.step()
            opt.zero_grad()
            with torch.no_grad():
                cap = config.clamp_norm_factor * v0.norm()
                if delta.norm() > cap:
                    delta.mul_(cap / delta.norm())
    v_star = (state["v0"] + delta.detach()).float()
    if not torch.isfinite(v_star).all():
        raise InterpError("v* optimisation produced non-finite values; the weights are untouched")
    return v_star, {"steps": len(history), "nll_history": history, "target_nll": history[-1],
                    "kl": round(kl.item() / config.kl_factor, 5) if config.kl_factor else 0.0,
                    "delta_norm_ratio": round(float(delta.detach().norm() / state["v0"].norm()), 4)}


# ----------------------------------------------------------------- the update


def rank_one_update(W_out: nn.Module, C: Float[Tensor, "d_mlp d_mlp"], k_star: Float[Tensor, " d_mlp"],
                    v_star: Float[Tensor, " d_model"], k_exact: Float[Tensor, " d_mlp"] | None = None
                    ) -> Float[Tensor, "d_model d_mlp"]:
    """ΔW (as ``[d_model, d_mlp]``) = Λ (C⁻¹k*)ᵀ, the update along C⁻¹k* that least disturbs other
    keys under C, with Λ = (v* − W_out(k)) / ((C⁻¹k*)ᵀ k) so that ``W_out'(k) = v*`` for
    ``k = k_exact`` (default ``k*``: the paper's Eq. 2)."""
    k_exact = k_star if k_exact is None else k_exact
    C64, k64, e64 = C.double(), k_star.double(), k_exact.double()
    ridge = 1e-8 * torch.trace(C64) / C64.shape[0]  # keys from a short corpus can leave C singular
    u = torch.linalg.solve(C64 + ridge * torch.eye(C64.shape[0], dtype=C64.dtype, device=C64.device), k64)
    with torch.no_grad():
        current = W_out(k_exact[None].to(W_out.weight.dtype))[0].double()
    lam = (v_star.double() - current) / (u @ e64)
    return torch.outer(lam, u)


def _apply(W_out: nn.Module, delta_W: Tensor) -> None:
    """Add ΔW in the module's own layout (Linear stores [out, in]; GPT-2's Conv1D [in, out])."""
    w = W_out.weight
    update = delta_W if isinstance(W_out, nn.Linear) else delta_W.T
    with torch.no_grad():
        w.data.copy_((w.data.double() + update.to(w.device)).to(w.dtype))


# ----------------------------------------------------------------- the edit


def edit(model, prompt: str, subject: str, target: str, layer: int | None = None,
         config: RomeConfig | None = None) -> Edit:
    """Rewrite ``prompt.format(subject)`` → ``target`` with one rank-one update of the MLP at
    ``layer``; returns the :class:`Edit` that undoes it. Weights are unchanged if anything fails."""
    config = config or RomeConfig()
    t0 = time.perf_counter()
    text, target_ids = check_request(model, prompt, subject, target)
    layer = config.layer if layer is None else layer
    picked = None
    if layer is None:
        picked = default_layer(model)
        layer = picked["layer"]
    layer = check_index(layer, model.cfg.n_layers, "layer")
    stats = key_moment(model, layer, config.corpus, config.cov_tokens)
    t1 = time.perf_counter()
    texts = [fill_template(t, subject) for t in templates(model, prompt, config)]
    k_star = compute_key(model, layer, texts, subject)
    k_exact = compute_key(model, layer, [text], subject) if config.update_key == "prompt" else k_star
    v_star, info = compute_value(model, layer, texts, subject, target_ids, config)
    W_out = out_proj(model, layer)
    delta_W = rank_one_update(W_out, stats.C, k_star, v_star, k_exact)
    if not torch.isfinite(delta_W).all():
        raise InterpError("the rank-one update is not finite (C is singular on this key); the weights are untouched")
    weight = W_out.weight
    original = weight.data.clone()
    _apply(W_out, delta_W)
    with torch.no_grad():
        achieved = W_out(k_exact[None].to(weight.dtype))[0].float()
    err = float((achieved - v_star).norm() / v_star.norm())
    e = Edit(prompt, subject, target, layer, k_star.cpu(), v_star.cpu(), k_exact.cpu(), {}, model, weight,
             original, weight.data.clone())
    edits(model).append(e)
    e.stats = {**info, "key_residual": round(err, 7), "target_tokens": str_tokens(model, torch.tensor(target_ids)),
               "update_norm": round(float(delta_W.norm()), 5), "prefixes": len(texts) - 1,
               "update_key": config.update_key,
               "layer_choice": "given" if picked is None else "peak MLP effect at the last subject token",
               "covariance": {"corpus": stats.corpus, "tokens": stats.tokens, "cached": stats.cached,
                              "seconds": round(stats.seconds, 3), "path": str(stats.path)},
               "edit_seconds": round(time.perf_counter() - t1, 3), "seconds": round(time.perf_counter() - t0, 3)}
    return e
