"""Automated interpretability: explain a feature in words, then score the words.

Following delphi (Paulo et al. 2024, "Automatically Interpreting Millions of Features
in Large Language Models"):

- the **explainer** reads the feature's top contexts and interval examples, with the
  tokens where it fires strongly marked «like this» and the most often marked tokens
  listed, after one worked example, and writes a one-line explanation;
- **detection** asks a scorer, for held-out contexts (activating ones from several
  intervals, and random ones where the feature never fires), whether the explanation
  applies to the text;
- **fuzzing** shows held-out activating contexts with marks on the tokens where the
  feature fires, or on as many other tokens, and asks whether the marks fit.

Both are balanced accuracy, (TPR + TNR) / 2, with a 95% interval from the two rates' Wilson
intervals, and AUROC. The scorer never writes free text: each answer is the sign of
log p(Yes) − log p(No) at its next token, less the same difference for a content-free
example (contextual calibration, Zhao et al. 2021), so a model's bias towards one
answer does not pass for a judgement.

Example text cannot inject instructions: it sits on one line after its label, with
newlines shown as ⏎ and the mark characters « » reserved (a context's own « » become
‹ ›). Explanations, scores, model names and :data:`PROMPT_VERSION` are stored in the
store (:func:`save_explanation`).
"""

from __future__ import annotations

import datetime
import math
import random
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from interp.cache import atomic_path
from interp.errors import InterpError
from saes.features.store import Context, FeatureStore

__all__ = ["MIN_PER_CLASS", "PROMPT_VERSION", "Score", "explain", "format_example", "save_explanation",
           "score_detection", "score_fuzzing", "wilson_interval", "yes_no_margins"]

PROMPT_VERSION = "v1"
SYSTEM = "You are a careful assistant. Answer briefly."


def format_example(tokens: Sequence[str], marked: set[int] = frozenset()) -> str:
    """One context on one line, tokens in ``marked`` wrapped in « »."""
    out = []
    for i, t in enumerate(tokens):
        t = t.replace("«", "‹").replace("»", "›").replace("\r", "").replace("\n", "⏎")
        out.append(f"«{t}»" if i in marked else t)
    return "".join(out).strip() or "(empty)"


def _chat(model, user: str, answer_prefix: str = "") -> str:
    tok = model.tokenizer
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = f"{SYSTEM}\n\n{user}\n\nAnswer:"
    return text + answer_prefix


MARK_FRACTION = 0.3
"""The explainer sees marks on the tokens where the feature reaches this fraction of its maximum in the
context: the strong activations, without the faint tail that blurs a pattern for a small explainer."""

_SHOT = ("Sentences with some words marked «like this»:\n1: I flew from «Paris» to «London» last year\n"
         "2: the train to «Berlin» was late\n3: she moved to «Tokyo» in May\n"
         "Most often marked: Paris, London, Berlin, Tokyo\nIn a few words, what are the marked words?",
         "Names of cities.")


def explain(model, examples: Sequence[Context], max_new_tokens: int = 24) -> str:
    """A one-line explanation of the feature behind ``examples`` (greedy, from the chat model ``model``).

    The prompt shows the examples with their strong activations marked and lists the most often marked
    tokens, after one worked example of the answer's form (a short noun phrase)."""
    from collections import Counter

    from interp.generation import generate

    if not examples:
        raise InterpError("the feature never fired in the store: there is nothing to explain")
    lines, marked = [], Counter()
    for i, c in enumerate(examples):
        on = {j for j, v in enumerate(c.values) if v > 0 and v >= MARK_FRACTION * c.max_value}
        marked.update(c.tokens[j].strip() or repr(c.tokens[j]) for j in on)
        lines.append(f"{i + 1}: {format_example(c.tokens, on)}")
    common = ", ".join(format_example([w]) for w, _ in marked.most_common(6))
    user = ("Sentences with some words marked «like this»:\n" + "\n".join(lines) +
            f"\nMost often marked: {common}\nIn a few words, what are the marked words?")
    tok = model.tokenizer
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": _SHOT[0]},
                {"role": "assistant", "content": _SHOT[1]}, {"role": "user", "content": user}]
    if getattr(tok, "chat_template", None):
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        prompt = f"{_SHOT[0]}\nAnswer: {_SHOT[1]}\n\n{user}\nAnswer:"
    text = generate(model, prompt, max_new_tokens, stop_at_eos=True)
    lines = [l.strip() for l in text.strip().split("\n") if l.strip()]
    line = lines[0] if lines else ""
    if line.endswith(":") and len(lines) > 1:  # "The marked words are:" with the answer on the next line
        line = f"{line} {lines[1]}"
    return line or "(no explanation)"


@torch.no_grad()
def yes_no_margins(model, prompts: Sequence[str], batch_size: int = 8) -> list[float]:
    """log p(Yes) − log p(No) of the token after each prompt (left-padded batches)."""
    from interp.generation import left_pad

    tok = model.tokenizer

    def first(word: str) -> int:
        return tok(word, add_special_tokens=False)["input_ids"][0]

    answers = {True: (first("Yes"), first("No")), False: (first(" Yes"), first(" No"))}  # after a newline, or a word
    hf, device = model.original_model, model.cfg.device
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        rows = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[i:i + batch_size]]
        ids, mask = left_pad(rows, tok.eos_token_id or 0, device)
        logits = hf(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        lp = logits[:, -1].float().log_softmax(-1)
        for b, p in enumerate(prompts[i:i + batch_size]):
            yes, no = answers[p[-1:].isspace() or not p]
            out.append(float(lp[b, yes] - lp[b, no]))
    return out


@dataclass
class Score:
    balanced_accuracy: float
    low: float
    high: float
    auroc: float
    n_positive: int
    n_negative: int


MIN_PER_CLASS = 10
"""Fewer held-out contexts than this on either side and a score's interval is too wide to rank
explanations by; the CLI warns."""


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for a binomial rate (Wilson 1927): unlike the normal approximation it
    keeps a width at rates of 0 or 1 and stays inside [0, 1] at small n."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _score(margins: list[float], labels: list[bool]) -> Score:
    """Balanced accuracy (TPR + TNR) / 2 at margin 0, with a 95% interval that is the mean of the two
    rates' Wilson intervals (conservative: each rate's interval at its own n), and AUROC."""
    from sklearn.metrics import roc_auc_score

    pos = [m > 0 for m, y in zip(margins, labels) if y]
    neg = [m <= 0 for m, y in zip(margins, labels) if not y]
    tpr, tnr = sum(pos) / len(pos), sum(neg) / len(neg)
    ba = (tpr + tnr) / 2
    (tp_lo, tp_hi), (tn_lo, tn_hi) = wilson_interval(sum(pos), len(pos)), wilson_interval(sum(neg), len(neg))
    auroc = float(roc_auc_score(labels, margins)) if len(set(labels)) == 2 else float("nan")
    return Score(ba, (tp_lo + tn_lo) / 2, (tp_hi + tn_hi) / 2, auroc, len(pos), len(neg))


def score_detection(model, explanation: str, activating: Sequence[Context], random_contexts: Sequence[Context]) -> Score:
    """Does the explanation say which contexts make the feature fire?"""
    def prompt(text: str) -> str:
        return _chat(model, f"A feature of a language model is active on: {explanation.strip()}\n\n"
                            f"Text: {text}\n\nIs the feature active anywhere in this text? Answer Yes or No.")

    contexts = list(activating) + list(random_contexts)
    margins = yes_no_margins(model, [prompt(format_example(c.tokens)) for c in contexts] + [prompt("(empty)")])
    base = margins.pop()
    return _score([m - base for m in margins], [True] * len(activating) + [False] * len(random_contexts))


def score_fuzzing(model, explanation: str, activating: Sequence[Context], seed: int = 0) -> Score:
    """Are the marked tokens the ones the feature fires on, or as many others chosen at random?"""
    rng = random.Random(seed)
    texts, labels = [], []
    for c in activating:
        on = {i for i, v in enumerate(c.values) if v > 0}
        off = [i for i in range(len(c.tokens)) if i not in on]
        if not on or len(off) < len(on):
            continue
        texts.append(format_example(c.tokens, on))
        labels.append(True)
        texts.append(format_example(c.tokens, set(rng.sample(off, len(on)))))
        labels.append(False)
    if not texts:
        raise InterpError("no held-out context has room to mark other tokens: fuzzing needs longer contexts")

    def prompt(text: str) -> str:
        return _chat(model, f"A feature of a language model is active on: {explanation.strip()}\n\n"
                            f"Text, with some tokens marked «like this»: {text}\n\n"
                            "Are the marked tokens ones this feature is active on? Answer Yes or No.")

    margins = yes_no_margins(model, [prompt(t) for t in texts] + [prompt("(empty)")])
    base = margins.pop()
    return _score([m - base for m in margins], labels)


def save_explanation(store: FeatureStore, sae: str, feature: int, explanation: str, explainer: str, scorer: str,
                     detection: Score | None, fuzzing: Score | None, seed: int, warning: str = "") -> dict:
    """Append one explanation with its scores to the store (a Parquet file of its own, written atomically).
    ``warning`` is kept with it (why its scores should not be trusted), for the dashboard to show."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    now = datetime.datetime.now(datetime.timezone.utc)
    row = {"sae": sae, "feature": feature, "explanation": explanation, "explainer": explainer, "scorer": scorer,
           "prompt_version": PROMPT_VERSION, "seed": seed, "created": now.isoformat(timespec="microseconds"),
           "warning": warning}
    for kind, s in (("detection", detection), ("fuzzing", fuzzing)):
        for k, v in (asdict(s) if s else dict.fromkeys(asdict(Score(0, 0, 0, 0, 0, 0)))).items():
            row[f"{kind}_{k}"] = v
    name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{sae}-{feature}.parquet"
    with atomic_path(store.path / "explanations" / name) as tmp:
        pq.write_table(pa.Table.from_pylist([row]), tmp)
    return row


def held_out(store: FeatureStore, feature: int, sae: str | None, shown: set[int], n: int, window: int,
             seed: int = 0) -> tuple[list[Context], list[Context]]:
    """Activating contexts from every interval that the explainer was not shown, and as many random
    contexts where the feature never fires."""
    groups = store.quantile_groups(feature, groups=5, per_group=max(2, n), sae=sae, window=window, seed=seed + 1)
    pool = [c for _, _, cs in groups for c in cs if c.context not in shown]
    per = max(1, n // max(len(groups), 1))
    activating = []
    for _, _, cs in groups:  # spread over the intervals
        activating += [c for c in cs if c.context not in shown][:per]
    activating += [c for c in pool if c not in activating][:n - len(activating)]
    rows = store._sql("SELECT context FROM (SELECT DISTINCT context FROM {tokens}) WHERE context NOT IN "
                      "(SELECT DISTINCT context FROM {acts} WHERE feature = ?) ORDER BY hash(context + ?) LIMIT ?",
                      sae, [feature, seed, len(activating)])
    quiet = store._contexts(feature, [(r["context"], 0.0, window) for r in rows], sae, window)
    return activating[:n], quiet


def known_feature(model, corpus: str | None, tokens: set[str], n: int = 24, ctx: int = 32
                  ) -> tuple[list[Context], list[Context]]:
    """Contexts of a hand-set latent that fires (value 1) exactly on the tokens whose text, stripped, is in
    ``tokens``: ``n`` where it fires and ``n`` where it does not, from the corpus in order."""
    from saes.features.extract import iter_contexts

    vocab_hits = {i for i in range(len(model.tokenizer))
                  if model.tokenizer.decode([i]).strip() in tokens}
    on, off = [], []
    for c, (doc, start, ids) in enumerate(iter_contexts(model.tokenizer, corpus, ctx)):
        values = [1.0 if i in vocab_hits else 0.0 for i in ids]
        values[0] = 0.0  # the sink is never read, as in the store
        toks = [model.tokenizer.decode([i]) for i in ids]
        item = Context(c, doc, start, toks, values, max(values), values.index(max(values)))
        (on if any(values) else off).append(item)
        if len(on) >= n and len(off) >= n:
            break
    return on[:n], off[:n]


def scorer_check(model, corpus: str | None, tokens: set[str], correct: str, wrong: str, n: int = 24) -> dict:
    """Detection and fuzzing scores of a correct and a wrong explanation of a known latent: an informative
    scorer ranks the correct one higher."""
    on, off = known_feature(model, corpus, tokens, n)
    out = {"n_activating": len(on), "n_random": len(off)}
    for label, text in (("correct", correct), ("wrong", wrong)):
        out[label] = {"explanation": text, "detection": asdict(score_detection(model, text, on, off)),
                      "fuzzing": asdict(score_fuzzing(model, text, on))}
    return out
