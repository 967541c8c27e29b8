"""Relations: linear relational embeddings, and fact recall replicated over a whole relation.

A *relation* is a template and its (subject, object) samples: ``"The capital city of {} is"``
with ``("France", " Paris")``, ... The shipped relations (``interp/data/relations``) keep
only subjects whose object's first token is the embedded model's top-1 prediction, as
Hernandez et al. (2024) keep only the facts their model knows.

**Linear relational embeddings** (Hernandez et al. 2024, "Linearity of Relation Decoding
in Transformer Language Models"). For subject i let ``s_i`` be the residual stream after
block ℓ at the subject's last token, and ``o_i`` the last block's output at the prompt's
last token (what the final norm and the unembedding read). The LRE is the first-order
approximation of ``s ↦ o`` averaged over n examples::

    W = mean_i ∂o_i/∂s_i,    b = mean_i (o_i − W s_i),    LRE(s) = β W s + b

Each Jacobian is exact and batched. The prompt's positions before the subject's last token
cannot see ``s``, so they run once into a key/value cache; the remaining positions run once
with ``s`` as a leaf, and one backward pass vmapped over the rows of the identity
(``torch.autograd.grad(..., is_grads_batched=True)``) gives all d_model rows of ∂o/∂s.

* **Faithfulness**: on held-out subjects, the fraction where the top token of
  ``unembed(norm(LRE(s)))`` equals the model's own top token.
* **Causality**: edit ``s_i`` by ``Δs = W⁺_r (o_j − o_i)``, with ``W⁺_r`` the pseudo-inverse
  of W kept to its top r singular values, so that it should say subject j's object; the
  fraction of held-out subjects where the model then does.

Objects longer than one token are scored by their first token.

Resample ablation and the relation circuit are in :mod:`interp.knowledge.fact_recall`.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from interp._batching import bind
from interp._files import read_json
from interp.errors import InterpError, check_index
from interp.generation import left_pad
from interp.knowledge.tracing import subject_span
from interp.progress import Estimate, progress
from interp.tokens import to_tokens

__all__ = ["KINDS", "LRE", "LRESweep", "Relation", "Sample", "causality", "check_rank", "default_layers", "faithfulness", "first_token",
    "fit_lre", "jacobian", "list_relations", "load_relation", "low_rank_pinv", "lre_sweep", "model_top1",
    "parse_relation", "split_samples", "subject_states"]

KINDS = ("factual", "linguistic", "commonsense")


@dataclass(frozen=True)
class Sample:
    subject: str
    object: str
    """As it follows the prompt, usually with a leading space: ``" Paris"``."""
    prompt: str


@dataclass
class Relation:
    """A named relation: a template and the samples filled into it."""

    name: str
    kind: str
    template: str
    samples: list[Sample]
    description: str = ""

    @property
    def subjects(self) -> list[str]:
        return [s.subject for s in self.samples]


def _shipped() -> list[str]:
    folder = resources.files("interp").joinpath("data/relations")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def list_relations() -> list[dict]:
    """The shipped relations: name, kind, number of subjects, template and description."""
    out = []
    for name in _shipped():
        rel = load_relation(name)
        out.append({"name": rel.name, "kind": rel.kind, "n_subjects": len(rel.samples),
                    "template": rel.template, "description": rel.description})
    return out


def load_relation(name_or_path: str) -> Relation:
    """A shipped relation by name (``country_capital``), or a relation JSON file."""
    shipped = _shipped()
    if name_or_path in shipped:
        return parse_relation(read_json(None, f"relations/{name_or_path}.json", "relation file"), name_or_path)
    if not Path(name_or_path).suffix and not Path(name_or_path).exists():
        raise InterpError(f"no shipped relation {name_or_path!r}: choose one of {', '.join(shipped)}, "
                          "or give a relation JSON file")
    data = read_json(name_or_path, "", "relation file")
    return parse_relation(data, Path(name_or_path).stem, where=f"relation file {name_or_path}")


def parse_relation(data, name: str = "relation", where: str = "relation") -> Relation:
    """Check a relation's JSON (format in docs/cli.md) and fill its prompts."""
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
        raise InterpError(f"{where} needs an object with a 'samples' list of {{subject, object}}")
    template = data.get("template")
    if template is not None and (not isinstance(template, str) or "{}" not in template):
        raise InterpError(f"{where}: the template {template!r} has no '{{}}' where the subject goes")
    samples = []
    for i, row in enumerate(data["samples"]):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip()
                                                for k in ("subject", "object")):
            raise InterpError(f"{where}: sample {i} needs a non-empty 'subject' and 'object'")
        prompt = row.get("prompt")
        if prompt is None:
            if template is None:
                raise InterpError(f"{where}: sample {i} has no 'prompt' and the relation no 'template'")
            prompt = template.replace("{}", row["subject"], 1)
        if row["subject"] not in prompt:
            raise InterpError(f"{where}: sample {i}'s subject {row['subject']!r} does not occur in its "
                              f"prompt {prompt!r}")
        samples.append(Sample(row["subject"], row["object"], prompt))
    if not samples:
        raise InterpError(f"{where} has no samples")
    return Relation(str(data.get("relation", name)), str(data.get("kind", "unspecified")), template or "",
                    samples, str(data.get("description", "")))


def first_token(model, text: str) -> int:
    """The first token of ``text`` (an object is scored by it)."""
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise InterpError(f"the object {text!r} tokenizes to nothing")
    return ids[0]


_NOTED: set[str] = set()  # relations whose multi-token objects were pointed out once


def _object_tokens(model, relation: Relation, samples: Sequence[Sample]) -> Tensor:
    long = [s.object for s in samples if len(model.tokenizer.encode(s.object, add_special_tokens=False)) > 1]
    if long and relation.name not in _NOTED:
        _NOTED.add(relation.name)
        shown = ", ".join(repr(x) for x in dict.fromkeys(long[:4]))
        print(f"interp: note: {len(long)} objects of {relation.name} are several tokens long ({shown}"
              f"{', ...' if len(long) > 4 else ''}); they are scored by their first token", file=sys.stderr)
    return torch.tensor([first_token(model, s.object) for s in samples])


def split_samples(relation: Relation, seed: int = 0, train_fraction: float = 0.5
                  ) -> tuple[list[Sample], list[Sample]]:
    """A seeded shuffle of the samples into (train, held-out)."""
    order = list(relation.samples)
    random.Random(seed).shuffle(order)
    cut = max(1, min(len(order) - 1, round(len(order) * train_fraction)))
    return order[:cut], order[cut:]


# --- forward passes -----------------------------------------------------------------------------

def _last_subject_token(model, sample: Sample) -> int:
    return subject_span(model, sample.prompt, sample.subject)[1] - 1


@torch.no_grad()
def _run(model, rows: list[list[int]], positions: Sequence[int], layers: Sequence[int] = (),
         edit: tuple[int, Tensor] | None = None, batch_size: int = 32) -> dict:
    """One left-padded pass per batch through the hooked model: last-position logits, the final
    block's output ``o`` there, ``s`` after each block of ``layers`` at ``positions[i]``, and
    with ``edit=(layer, delta)`` ``delta[i]`` added after that block at ``positions[i]``."""
    hf, n = model.original_model, model.cfg.n_layers
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    device = model.cfg.device
    out = {"logits": [], "o": [], "s": {l: [] for l in layers}}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        ids, mask = left_pad(chunk, pad, device)
        at = torch.tensor([ids.shape[1] - len(r) + p for r, p in zip(chunk, positions[start:start + batch_size])],
                          device=device)
        b = torch.arange(len(chunk), device=device)
        got: dict = {}

        def capture(x, *, hook, layer):
            got[layer] = x[b, at].float().cpu()
            return x

        def last(x, *, hook):
            got["o"] = x[:, -1].float().cpu()
            return x

        hooks = [(f"blocks.{l}.hook_resid_post", bind(capture, layer=l)) for l in layers]
        if edit is not None:
            layer, delta = edit
            d = delta[start:start + batch_size].to(device)

            def add(x, *, hook):
                x = x.clone()
                x[b, at] = x[b, at] + d.to(x.dtype)
                return x
            hooks.append((f"blocks.{layer}.hook_resid_post", add))
        hooks.append((f"blocks.{n - 1}.hook_resid_post", last))
        with model.hooks(fwd_hooks=hooks):
            logits = hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                        use_cache=False).logits[:, -1]
        out["logits"].append(logits.float().cpu())
        out["o"].append(got["o"])
        for l in layers:
            out["s"][l].append(got[l])
    return {"logits": torch.cat(out["logits"]), "o": torch.cat(out["o"]),
            "s": {l: torch.cat(v) for l, v in out["s"].items()}}


def model_top1(model, prompts: Sequence[str]) -> list[int]:
    """The model's top-1 next token after each prompt."""
    rows = [to_tokens(model, p)[0].tolist() for p in prompts]
    return _run(model, rows, [len(r) - 1 for r in rows])["logits"].argmax(-1).tolist()


@dataclass
class _States:
    samples: list[Sample]
    rows: list[list[int]]
    positions: list[int]
    s: dict[int, Tensor]
    o: Tensor
    top: Tensor
    """The model's own top-1 token."""
    objects: Tensor


def subject_states(model, relation: Relation, samples: Sequence[Sample], layers: Sequence[int]) -> _States:
    """``s`` at every layer of ``layers`` and ``o``, for each sample, in one pass per batch."""
    samples = list(samples)
    rows = [to_tokens(model, s.prompt)[0].tolist() for s in samples]
    positions = [_last_subject_token(model, s) for s in samples]
    run = _run(model, rows, positions, layers)
    return _States(samples, rows, positions, run["s"], run["o"], run["logits"].argmax(-1),
                   _object_tokens(model, relation, samples))


def _decode(model, o: Tensor) -> Tensor:
    """Logits of final-block outputs ``[n, d_model]`` through the model's final norm and unembedding."""
    with torch.no_grad():
        x = o.to(model.cfg.device, model.W_U.dtype)[:, None]
        return model.unembed(model.ln_final(x))[:, 0].float().cpu()


# --- the Jacobian and the LRE -------------------------------------------------------------------

def jacobian(model, prompt: str, subject: str, layer: int, chunk: int | None = None
             ) -> tuple[Tensor, Tensor, Tensor]:
    """``(∂o/∂s [d_model, d_model], s, o)`` at ``layer`` for the subject's last token of ``prompt``.

    The positions before that token run once into a key/value cache; the rest run once with
    ``s`` a leaf; one vmapped backward pass over the identity's rows (``chunk`` at a time,
    default all) gives the Jacobian's rows."""
    layer = check_index(layer, model.cfg.n_layers, "layer")
    row = to_tokens(model, prompt)[0]
    p = subject_span(model, prompt, subject)[1] - 1
    return _jacobian(model, row, p, layer, chunk)


def _jacobian(model, row: Tensor, p: int, layer: int, chunk: int | None) -> tuple[Tensor, Tensor, Tensor]:
    hf, n, d = model.original_model, model.cfg.n_layers, model.cfg.d_model
    row = row.to(model.cfg.device)
    cache = None
    if p > 0:
        with torch.no_grad():
            cache = hf(input_ids=row[None, :p], use_cache=True).past_key_values
    state: dict[str, Tensor] = {}

    def inject(x, *, hook):
        s = x[0, 0].detach().clone().requires_grad_(True)
        state["s"] = s
        return torch.cat([s[None, None], x[:, 1:]], 1)

    def last(x, *, hook):
        state["o"] = x[0, -1]
        return x

    hooks = [(f"blocks.{layer}.hook_resid_post", inject), (f"blocks.{n - 1}.hook_resid_post", last)]
    kwargs = {"past_key_values": cache, "use_cache": True} if cache is not None else {"use_cache": False}
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        hf(input_ids=row[None, p:], position_ids=torch.arange(p, len(row), device=row.device)[None], **kwargs)
        s, o = state["s"], state["o"]
        eye = torch.eye(d, dtype=o.dtype, device=o.device)
        step = chunk or d
        parts = []
        for i in range(0, d, step):
            (g,) = torch.autograd.grad(o, s, grad_outputs=eye[i:i + step], is_grads_batched=True,
                                       retain_graph=i + step < d)
            parts.append(g.float().cpu())
    return torch.cat(parts), s.detach().float().cpu(), o.detach().float().cpu()


def check_rank(rank: int, full: int) -> int:
    """``rank`` if a pseudo-inverse of a ``full``-rank (d_model) matrix can keep that many singular values."""
    if not 1 <= rank <= full:
        raise InterpError(f"rank {rank} is out of range: W is {full}×{full}, so the rank must be 1..{full} "
                          "(at most d_model)")
    return rank


def low_rank_pinv(matrix: Tensor, rank: int | None = None) -> Tensor:
    """Moore–Penrose pseudo-inverse of ``matrix`` kept to its top ``rank`` singular values
    (all of them when ``rank`` is None)."""
    full = min(matrix.shape)
    rank = full if rank is None else check_rank(rank, full)
    u, sv, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return ((vh[:rank].T / sv[:rank]) @ u[:, :rank].T).to(matrix.dtype)


BETAS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


@dataclass
class LRE:
    """``LRE(s) = β W s + b`` at one layer."""

    relation: str
    layer: int
    beta: float
    weight: Tensor
    bias: Tensor
    examples: list[str]
    seconds: float
    """Wall time of the Jacobians and the fit."""

    def apply(self, s: Tensor) -> Tensor:
        return self.beta * s @ self.weight.T + self.bias


def fit_lre(model, relation: Relation, layer: int, n: int = 8, examples: Sequence[Sample] | None = None,
            seed: int = 0, chunk: int | None = None, beta: float = 1.0) -> LRE:
    """W and b from ``n`` examples (default: the first n of the seeded training split)."""
    layer = check_index(layer, model.cfg.n_layers, "layer")
    if examples is None:
        train, _ = split_samples(relation, seed)
        if n < 1 or len(train) < n:
            raise InterpError(f"relation {relation.name} has {len(relation.samples)} samples, {len(train)} for "
                              f"training; an LRE from n={n} examples needs at least {n} (and {2 * n} in all, "
                              "half held out): lower --n or add samples")
        examples = train[:n]
    t0 = time.perf_counter()
    js, ss, os_ = [], [], []
    for sample in progress(list(examples), desc=f"Jacobians at layer {layer}", unit="example", leave=False):
        j, s, o = jacobian(model, sample.prompt, sample.subject, layer, chunk)
        js.append(j)
        ss.append(s)
        os_.append(o)
    w = torch.stack(js).mean(0)
    b = (torch.stack(os_) - torch.stack(ss) @ w.T).mean(0)
    return LRE(relation.name, layer, beta, w, b, [s.subject for s in examples], time.perf_counter() - t0)


def faithfulness(model, lre: LRE, states: _States) -> tuple[float, Tensor]:
    """Fraction of samples where the LRE's top token equals the model's, and the LRE's tokens."""
    pred = _decode(model, lre.apply(states.s[lre.layer])).argmax(-1)
    return (pred == states.top).float().mean().item(), pred


def _targets(states: _States) -> list[int]:
    """For each sample, the next one (cyclically) whose object starts with another token; -1 if none."""
    m = len(states.samples)
    out = []
    for i in range(m):
        j = next((k % m for k in range(i + 1, i + m) if states.objects[k % m] != states.objects[i]), -1)
        out.append(j)
    return out


def causality(model, lre: LRE, states: _States, rank: int | None = None) -> tuple[float, list[int]]:
    """Fraction of samples i whose edited state ``s_i + W⁺_r (o_j − o_i)`` makes the model say
    object j's first token (j: the next sample with another object); and the targets j."""
    inv = low_rank_pinv(lre.weight, rank)
    targets = _targets(states)
    keep = [i for i, j in enumerate(targets) if j >= 0]
    if not keep:
        raise InterpError(f"every held-out subject of {lre.relation} has the same object: causality needs "
                          "two different objects")
    src = torch.tensor(keep)
    dst = torch.tensor([targets[i] for i in keep])
    delta = (states.o[dst] - states.o[src]) @ inv.T
    rows = [states.rows[i] for i in keep]
    pos = [states.positions[i] for i in keep]
    logits = _run(model, rows, pos, edit=(lre.layer, delta))["logits"]
    hit = logits.argmax(-1) == states.objects[dst]
    return hit.float().mean().item(), targets


def _choose_beta(model, lre: LRE, states: _States) -> float:
    """The β of :data:`BETAS` with the best faithfulness on ``states`` (training subjects); ties go
    to the smaller β."""
    best, best_f = 1.0, -1.0
    for beta in BETAS:
        f = faithfulness(model, replace(lre, beta=beta), states)[0]
        if f > best_f + 1e-9:
            best, best_f = beta, f
    return best


@dataclass
class LRESweep:
    """Faithfulness and causality of one relation's LRE at each layer."""

    relation: str
    kind: str
    layers: list[int]
    faithfulness: list[float]
    causality: list[float]
    beta: list[float]
    n: int
    rank: int | None
    n_train: int
    n_test: int
    seconds_per_lre: list[float]
    seconds: float
    n_sweep: dict = field(default_factory=dict)
    """At the best layer: n → (faithfulness, causality)."""
    rank_sweep: dict = field(default_factory=dict)
    """At the best layer: rank → causality."""

    @property
    def best_layer(self) -> int:
        """The layer with the highest faithfulness + causality (the earlier one on ties)."""
        score = [f + c for f, c in zip(self.faithfulness, self.causality)]
        return self.layers[max(range(len(score)), key=lambda i: (score[i], -i))]

    def figure(self):
        """This sweep as a plotly figure (:func:`interp.figures.lre_figure`)."""
        from interp.figures import lre_figure

        return lre_figure([self])


def default_layers(n_layers: int, every: int = 3) -> list[int]:
    """The default sweep: every ``every``-th layer from 0 and the last (0, 3, ..., 27, 29 on a
    30-layer model, the README's table: 11 LREs instead of 30)."""
    return sorted(set(range(0, n_layers, every)) | {n_layers - 1})


def lre_sweep(model, relation: Relation, layers: Sequence[int] | None = None, n: int = 8,
              rank: int | None = None, ns: Sequence[int] = (), ranks: Sequence[int] = (), seed: int = 0,
              chunk: int | None = None) -> LRESweep:
    """An LRE at each of ``layers`` (default :func:`default_layers`, every third layer and the last; the
    CLI's ``--layers all`` gives every layer): faithfulness and causality on the held-out
    subjects, β chosen on the training subjects. ``ns`` and ``ranks`` sweep the number of
    examples and the pseudo-inverse's rank at the best layer."""
    t0 = time.perf_counter()
    n_layers = model.cfg.n_layers
    layers = default_layers(n_layers) if layers is None else [check_index(l, n_layers, "layer") for l in layers]
    for r in ([] if rank is None else [rank]) + list(ranks):  # before the work
        check_rank(r, model.cfg.d_model)
    train, test = split_samples(relation, seed)
    if len(train) < max([n, *ns]):
        raise InterpError(f"relation {relation.name} has {len(relation.samples)} samples, {len(train)} for "
                          f"training; an LRE from n={max([n, *ns])} examples needs at least that many")
    tr = subject_states(model, relation, train, layers)
    te = subject_states(model, relation, test, layers)
    faith, caus, betas, secs, fitted = [], [], [], [], {}
    estimate = Estimate(f"LRE sweep of {relation.name}", len(layers), "layers",
                        "fewer with --layers, e.g. --layers 9,15" if len(layers) > 3 else "")
    for layer in progress(layers, desc=f"LRE {relation.name}", unit="layer"):
        lre = fit_lre(model, relation, layer, n, examples=train[:n], chunk=chunk)
        lre.beta = _choose_beta(model, lre, tr)
        faith.append(faithfulness(model, lre, te)[0])
        caus.append(causality(model, lre, te, rank)[0])
        betas.append(lre.beta)
        secs.append(lre.seconds)
        fitted[layer] = lre
        estimate.done()
    result = LRESweep(relation.name, relation.kind, layers, faith, caus, betas, n, rank, len(train), len(test),
                      secs, 0.0)
    best = result.best_layer
    for k in ns:
        lre = fitted[best] if k == n else fit_lre(model, relation, best, k, examples=train[:k], chunk=chunk)
        lre.beta = _choose_beta(model, lre, tr)
        result.n_sweep[k] = (faithfulness(model, lre, te)[0], causality(model, lre, te, rank)[0])
    for r in ranks:  # the best layer's LRE again: causality reads W alone
        result.rank_sweep[r] = causality(model, fitted[best], te, r)[0]
    result.seconds = time.perf_counter() - t0
    return result
