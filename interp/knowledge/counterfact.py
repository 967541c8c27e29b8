"""CounterFact-style evaluation of ROME edits (Meng et al. 2022, §3.2 and Appendix C).

Each request rewrites one fact and carries prompts that probe the edit:

- the rewrite prompt itself: efficacy, ES = 1[P(new) > P(true)], EM = P(new) − P(true);
- paraphrases of it: generalisation, PS and PM the same way;
- other subjects that share the relation and the true object ("The Louvre is
  located in the city of" for the Eiffel Tower → Rome): specificity,
  NS = 1[P(true) > P(new)], NM = P(true) − P(new);
- generation prompts: fluency, ROME's n-gram entropy of sampled continuations.

S is the harmonic mean of ES, PS and NS. A target of several tokens is scored by
its per-token geometric mean probability, exp(mean log p), so one-token targets
score by their plain probability. Every metric is reported before and after the
edit; each edit is undone before the next request.

Files: ``{"requests": [...]}`` or a bare list, each request either in this
workbench's flat form (``prompt, subject, target_new, target_true,
paraphrase_prompts, neighborhood_prompts, generation_prompts``) or in
CounterFact's own (``requested_rewrite: {prompt, subject, target_new: {str},
target_true: {str}}`` with the prompt lists beside it).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch

from interp._files import read_json
from interp.errors import InterpError, check_index
from interp.generation import generate
from interp.progress import Estimate, progress
from interp.knowledge.rome import Edit, RomeConfig, check_request, edit
from interp.tokens import right_pad, str_tokens, to_tokens

__all__ = ["EditReport", "EvalResult", "Request", "edit_report", "evaluate", "load_requests", "ngram_entropy",
    "target_probs"]


@dataclass(frozen=True)
class Request:
    """One rewrite and the prompts that evaluate it."""

    prompt: str
    subject: str
    target_new: str
    target_true: str
    paraphrase_prompts: tuple[str, ...]
    neighborhood_prompts: tuple[str, ...]
    generation_prompts: tuple[str, ...] = ()
    id: str = ""


def _space(s: str) -> str:
    return s if s.startswith(" ") else " " + s  # CounterFact stores objects without the space


def load_requests(path: str | None = None) -> list[Request]:
    """Requests from a JSON file (the shipped set when ``path`` is None), validated."""
    where = path or "the shipped request set"
    data = read_json(path, "counterfact_requests.json", "request file")
    items = data.get("requests") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise InterpError(f"request file {where} holds no requests (expected a list or {{'requests': [...]}})")
    out = []
    for i, r in enumerate(items):
        try:
            if "requested_rewrite" in r:
                rw = r["requested_rewrite"]
                req = Request(rw["prompt"], rw["subject"], _space(rw["target_new"]["str"]),
                              _space(rw["target_true"]["str"]), tuple(r["paraphrase_prompts"]),
                              tuple(r["neighborhood_prompts"]), tuple(r.get("generation_prompts", ())),
                              str(r.get("case_id", i)))
            else:
                req = Request(r["prompt"], r["subject"], r["target_new"], r["target_true"],
                              tuple(r["paraphrase_prompts"]), tuple(r["neighborhood_prompts"]),
                              tuple(r.get("generation_prompts", ())), str(r.get("id", i)))
        except (KeyError, TypeError) as err:
            raise InterpError(f"request {i} of {where} lacks field {err}; see README 'Request files'") from err
        if req.prompt.count("{}") != 1:
            raise InterpError(f"request {i} of {where}: prompt {req.prompt!r} needs '{{}}' exactly once")
        out.append(req)
    return out


@torch.no_grad()
def target_probs(model, prompts: list[str], targets: list[str]) -> torch.Tensor:
    """``[prompt][target]`` geometric-mean token probability of each target after each prompt,
    from one right-padded forward pass (causal attention keeps padding invisible)."""
    rows, spans = [], []
    for p in prompts:
        ids = to_tokens(model, p)[0].tolist()
        for t in targets:
            tid = model.tokenizer.encode(t, add_special_tokens=False)
            spans.append((len(ids), tid))
            rows.append(ids + tid[:-1])
    logp = model(right_pad(model, rows)).float().log_softmax(-1)
    out = []
    for i, (start, tid) in enumerate(spans):
        pos = torch.arange(start - 1, start - 1 + len(tid), device=logp.device)
        out.append(logp[i, pos, torch.tensor(tid, device=logp.device)].mean().exp().item())
    return torch.tensor(out).view(len(prompts), len(targets))


def ngram_entropy(text: str, ns=(2, 3), weights=(2 / 3, 4 / 3)) -> float:
    """ROME's fluency measure: the weighted mean of the n-gram entropies (bits) of a text's words."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    ents = []
    for n in ns:
        grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        ents.append(-sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0)
    return sum(w * e for w, e in zip(weights, ents)) / len(ents)


def _scores(model, r: Request) -> dict:
    prompts = [r.prompt.replace("{}", r.subject, 1), *r.paraphrase_prompts, *r.neighborhood_prompts]
    p = target_probs(model, prompts, [r.target_new, r.target_true])
    new, true = p[:, 0], p[:, 1]
    rw, para = slice(0, 1), slice(1, 1 + len(r.paraphrase_prompts))
    nb = slice(1 + len(r.paraphrase_prompts), None)
    return {
        "ES": float((new[rw] > true[rw]).float().mean()), "EM": float((new[rw] - true[rw]).mean()),
        "PS": float((new[para] > true[para]).float().mean()), "PM": float((new[para] - true[para]).mean()),
        "NS": float((true[nb] > new[nb]).float().mean()), "NM": float((true[nb] - new[nb]).mean()),
        "p_new": float(new[0]), "p_true": float(true[0]),
    }


def _harmonic(*xs: float) -> float:
    return 0.0 if min(xs) <= 0 else len(xs) / sum(1 / x for x in xs)


@dataclass
class EvalResult:
    """Per-request and mean metrics before (``pre``) and after (``post``) each edit, in %."""

    pre: dict
    post: dict
    requests: list[dict]
    seconds: float
    edit_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"pre": self.pre, "post": self.post, "requests": self.requests, "seconds": round(self.seconds, 3),
                "edit_seconds_mean": round(sum(self.edit_seconds) / len(self.edit_seconds), 3)}

    def figure(self, model_name: str = ""):
        """Success rates before and after, and each request's efficacy margin
        (:func:`interp.figures.edit_eval_figure`)."""
        from interp.figures import edit_eval_figure

        return edit_eval_figure({"model": model_name, "n_requests": len(self.requests), **self.to_dict()})


def _mean(rows: list[dict]) -> dict:
    keys = ["ES", "EM", "PS", "PM", "NS", "NM", "fluency"]
    m = {k: 100 * sum(r[k] for r in rows) / len(rows) for k in keys if k != "fluency"}
    m["S"] = _harmonic(m["ES"], m["PS"], m["NS"])
    flu = [r["fluency"] for r in rows if r.get("fluency") is not None]
    m["fluency"] = sum(flu) / len(flu) if flu else None
    return {k: (round(v, 3) if v is not None else None) for k, v in m.items()}


def evaluate(model, requests: list[Request], layer: int | None = None, config: RomeConfig | None = None,
             fluency: bool = True) -> EvalResult:
    """Edit, score and undo each request in turn; the model ends exactly as it began."""
    t0 = time.perf_counter()
    pre_rows, post_rows, per, times = [], [], [], []
    estimate = Estimate("CounterFact evaluation", len(requests), "edits", "fewer with --limit N")
    for i, r in enumerate(progress(requests, desc="CounterFact eval", unit="edit")):
        if i == 1:
            estimate.done(1)  # the first edit timed (with its key statistics, when they were not cached)
        pre = _scores(model, r)
        if fluency and r.generation_prompts:
            pre["fluency"], _ = _fluency(model, r)
        with edit(model, r.prompt, r.subject, r.target_new, layer, config) as e:
            post = _scores(model, r)
            if fluency and r.generation_prompts:
                post["fluency"], post["generations"] = _fluency(model, r)
            times.append(e.stats["edit_seconds"])
            per.append({"id": r.id, "subject": r.subject, "target_new": r.target_new,
                        "target_true": r.target_true, "layer": e.layer, "steps": e.stats["steps"],
                        "pre": {k: round(v, 5) for k, v in pre.items()},
                        "post": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in post.items()}})
        pre_rows.append(pre)
        post_rows.append(post)
    return EvalResult(_mean(pre_rows), _mean(post_rows), per, time.perf_counter() - t0, times)


def _fluency(model, r: Request) -> tuple[float, list[str]]:
    texts = generate(model, list(r.generation_prompts), 40, mode="sample", top_k=5)
    return sum(ngram_entropy(t) for t in texts) / len(texts), texts


@dataclass
class EditReport:
    """One ROME edit with what it changed: greedy completions and target probabilities, before and after."""

    edit: Edit
    """The edit, still applied: ``report.edit.undo()`` restores the weights exactly."""
    prompt: str
    subject: str
    target: str
    previous_answer: str
    """The model's top next token on the rewrite prompt before the edit."""
    tokens: list[str]
    completion_prompts: list[str]
    completions: dict[str, list[str]]
    """``{"before": [...], "after": [...]}``, one greedy continuation per completion prompt."""
    probs: dict[str, dict[str, float]]
    """``{"before"|"after": {"target": P, "previous_answer": P}}`` on the rewrite prompt."""
    seconds: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{"before"|"after": {...}}``: CounterFact's efficacy (ES, EM), and paraphrase (PS, PM) and
    neighbourhood (NS, NM) scores where those prompts were given, as fractions, with the previous
    answer as the true object."""

    @property
    def reached(self) -> bool:
        """Whether the edit took: after it, the target is likelier than the previous answer on the
        rewrite prompt (CounterFact's efficacy for this one prompt)."""
        return self.probs["after"]["target"] > self.probs["after"]["previous_answer"]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "subject": self.subject, "target": self.target,
                "previous_answer": self.previous_answer, "layer": self.edit.layer, "tokens": self.tokens,
                "completion_prompts": self.completion_prompts, "completions": self.completions,
                "probs": self.probs, "reached": self.reached, "metrics": self.metrics, "edit": self.edit.summary(),
                "seconds": self.seconds}

    def figure(self):
        """P(target) and P(previous answer) before/after, and the v* optimisation
        (:func:`interp.figures.edit_figure`)."""
        from interp.figures import edit_figure

        return edit_figure(self.to_dict())


def edit_report(model, prompt: str, subject: str, target: str, layer: int | None = None,
                config: RomeConfig | None = None, prompts: list[str] | tuple[str, ...] = (),
                max_new_tokens: int = 20, paraphrases: Sequence[str] = (), neighbours: Sequence[str] = ()
                ) -> EditReport:
    """Edit ``prompt.format(subject)`` → ``target`` (:func:`interp.knowledge.rome.edit`), and report
    greedy completions of the rewrite prompt, ``"{subject} is"`` and ``prompts``, P(target)
    and P(previous answer), and CounterFact's scores on ``paraphrases`` (prompts that should now
    give the target) and ``neighbours`` (other subjects' prompts that should keep the previous
    answer), before and after. The edit stays applied."""
    text, _ = check_request(model, prompt, subject, target)  # fail before loading statistics
    if layer is not None or (config and config.layer is not None):  # before the "before" completions
        check_index(layer if layer is not None else config.layer, model.cfg.n_layers, "layer")
    completion_prompts = [text, f"{subject} is", *prompts]
    t0 = time.perf_counter()
    ids = to_tokens(model, text)
    with torch.no_grad():
        answer = model.tokenizer.decode(model(ids)[0, -1].argmax())
    request = Request(prompt, subject, target, answer, tuple(p for p in paraphrases if p.strip()),
                      tuple(p for p in neighbours if p.strip()))
    before = generate(model, completion_prompts, max_new_tokens)
    p_before = target_probs(model, [text], [target, answer])[0].tolist()
    m_before = _given(_scores(model, request), request)
    e = edit(model, prompt, subject, target, layer, config)
    after = generate(model, completion_prompts, max_new_tokens)
    p_after = target_probs(model, [text], [target, answer])[0].tolist()
    m_after = _given(_scores(model, request), request)
    return EditReport(e, prompt, subject, target, answer, str_tokens(model, ids[0]), completion_prompts,
                      {"before": before, "after": after},
                      {"before": {"target": p_before[0], "previous_answer": p_before[1]},
                       "after": {"target": p_after[0], "previous_answer": p_after[1]}},
                      time.perf_counter() - t0, {"before": m_before, "after": m_after})


def _given(scores: dict, r: Request) -> dict:
    """The scores a request's prompts support: efficacy always, the rest where prompts were given."""
    keep = ["ES", "EM"] + (["PS", "PM"] if r.paraphrase_prompts else [])
    keep += ["NS", "NM"] if r.neighborhood_prompts else []
    return {k: scores[k] for k in keep}
