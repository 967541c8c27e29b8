"""Linear probes per layer, with control tasks (Conneau et al. 2018; Hewitt & Liang 2019).

A probe is scikit-learn's ``LogisticRegression`` after a ``StandardScaler``, fitted on
one layer's activations. The regularisation strength C is chosen by grouped
cross-validation on the training split only; held-out accuracy comes with a Wilson
95% interval. Splits keep every ``group`` (a country, an adjective, a meaning, a word)
on one side, so a probe cannot pass by recognising a template it was trained on.

Selectivity (Hewitt & Liang 2019) is accuracy minus the accuracy of the same pipeline
on a control task: the same inputs and split, with each word *type* at the probed
position given a fixed random label (the last word of a text, the marked span, or the
word itself for token-level data). A probe that memorises word identities does well
on the control task too; a selective one does not.

Datasets (``interp/data/probe_*.json``, README "Probe datasets"):

- sequence level: ``{"text", "label", "group"}``; ``position`` is ``last`` (the last
  token), ``mean`` (all tokens) or ``span`` (the tokens inside ``[[...]]`` in the text);
- token level: ``{"words": [...], "labels": [label or null per word], "group"}``, each
  labelled word read at its last token.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from interp._files import read_json
from interp.errors import InterpError, check_index
from interp.progress import progress
from interp.tokens import right_pad, to_tokens

__all__ = ["Activations", "CS", "LayerProbe", "ProbeDataset", "ProbeReport", "SHIPPED", "SITES",
    "collect_activations", "control_labels", "feature_cosines", "fit_probe", "grouped_split",
    "load_dataset", "probe_layers", "wilson"]

SHIPPED = ("truth", "sentiment", "language", "pos")
SITES = {"resid_post": "hook_resid_post", "resid_pre": "hook_resid_pre", "resid_mid": "hook_resid_mid",
         "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}
CS = (0.001, 0.01, 0.1, 1.0, 10.0)
_SPAN = re.compile(r"\[\[(.+?)\]\]")


@dataclass
class ProbeDataset:
    """Examples flattened to probe items: one per text (sequence level) or per labelled word."""

    name: str
    task: str
    position: str
    labels: list[str]
    texts: list[str]
    """Model inputs, span markers removed."""
    spans: list[list[tuple[int, int]]]
    """Per text, the character spans read (one per item from that text)."""
    item_text: list[int]
    """For each item, the index of its text."""
    y: np.ndarray
    groups: list[str]
    types: list[str]
    """The word type at each item's position, for the control task."""
    description: str = ""


def load_dataset(name_or_path: str) -> ProbeDataset:
    """A shipped dataset by name (``truth``, ``sentiment``, ``language``, ``pos``) or a JSON file."""
    if name_or_path in SHIPPED:
        doc = read_json(None, f"probe_{name_or_path}.json", "dataset")
    elif not Path(name_or_path).exists():
        raise InterpError(f"dataset {name_or_path!r} is neither a shipped one ({', '.join(SHIPPED)}) "
                          "nor an existing file")
    else:
        doc = read_json(name_or_path, "", "dataset")
    if not isinstance(doc, dict) or not isinstance(doc.get("examples"), list) or not doc["examples"]:
        raise InterpError(f"dataset {name_or_path} needs an 'examples' list (README 'Probe datasets')")
    task = doc.get("task", "token" if "words" in doc["examples"][0] else "sequence")
    name = doc.get("name", Path(name_or_path).stem)
    ds = _token_items(doc, name) if task == "token" else _sequence_items(doc, name)
    counts = Counter(ds.y.tolist())
    if len(counts) < 2:
        raise InterpError(f"dataset {name} has only one class ({ds.labels[ds.y[0]] if len(ds.y) else 'none'}); "
                          "a probe needs at least two")
    return ds


def _sequence_items(doc: dict, name: str) -> ProbeDataset:
    position = doc.get("position", "last")
    if position not in ("last", "mean", "span"):
        raise InterpError(f"dataset {name}: position must be last, mean or span, not {position!r}")
    labels = doc.get("labels") or sorted({str(e.get("label")) for e in doc["examples"]})
    texts, spans, y, groups, types = [], [], [], [], []
    for i, e in enumerate(doc["examples"]):
        if not isinstance(e, dict) or "text" not in e or "label" not in e:
            raise InterpError(f"dataset {name}: example {i} needs 'text' and 'label'")
        if e["label"] not in labels:
            raise InterpError(f"dataset {name}: example {i} has label {e['label']!r}, not one of {labels}")
        text = e["text"]
        if position == "span":
            m = _SPAN.search(text)
            if not m:
                raise InterpError(f"dataset {name}: example {i} {text!r} has no [[span]] marker")
            clean = text[:m.start()] + m.group(1) + text[m.end():]
            span, typ = (m.start(), m.start() + len(m.group(1))), m.group(1).lower()
        else:
            clean = text
            span = (0, len(text)) if position == "mean" else (len(text) - 1, len(text))
            words = re.findall(r"\w+", text)
            typ = words[-1].lower() if words else text
        texts.append(clean)
        spans.append([span])
        y.append(labels.index(e["label"]))
        groups.append(str(e.get("group", i)))
        types.append(typ)
    return ProbeDataset(name, "sequence", position, list(labels), texts, spans, list(range(len(texts))),
                        np.array(y), groups, types, doc.get("description", ""))


def _token_items(doc: dict, name: str) -> ProbeDataset:
    labels = doc.get("labels") or sorted({l for e in doc["examples"] for l in e.get("labels", []) if l})
    texts, spans, item_text, y, groups, types = [], [], [], [], [], []
    for i, e in enumerate(doc["examples"]):
        words, tags = e.get("words"), e.get("labels")
        if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
            raise InterpError(f"dataset {name}: example {i} needs 'words' and 'labels' of the same length "
                              f"({len(words or [])} words, {len(tags or [])} labels)")
        text, offsets = "", []
        for w in words:
            text += ("" if not text or w in ".,!?;:" else " ")
            offsets.append((len(text), len(text) + len(w)))
            text += w
        ti = len(texts)
        texts.append(text)
        spans.append([])
        for (a, b), w, tag in zip(offsets, words, tags):
            if tag is None:
                continue
            if tag not in labels:
                raise InterpError(f"dataset {name}: example {i} labels {w!r} as {tag!r}, not one of {labels}")
            spans[ti].append((b - 1, b))  # the word's last character: its last token
            item_text.append(ti)
            y.append(labels.index(tag))
            groups.append(str(e.get("group", i)))
            types.append(w.lower())
    return ProbeDataset(name, "token", "token", list(labels), texts, spans, item_text, np.array(y), groups, types,
                        doc.get("description", ""))


@dataclass
class Activations:
    """Probe inputs: ``X[layer][item]`` at one site, with the dataset they came from."""

    X: Float[Tensor, "layer item d_model"]
    layers: list[int]
    site: str
    dataset: ProbeDataset


@torch.no_grad()
def collect_activations(model, ds: ProbeDataset, layers: list[int] | None = None, site: str = "resid_post",
                        batch_size: int = 32) -> Activations:
    """Activations at every requested layer for every item, from right-padded batched forwards."""
    if site not in SITES:
        raise InterpError(f"site {site!r} is not one of {', '.join(SITES)}")
    n = model.cfg.n_layers
    layers = list(range(n)) if layers is None else [check_index(l, n, "layer") for l in layers]
    names = [f"blocks.{l}.{SITES[site]}" for l in layers]
    positions = [_positions(model, t, sp) for t, sp in zip(ds.texts, ds.spans)]
    rows: list[list[Tensor]] = [[] for _ in ds.texts]
    for start in progress(range(0, len(ds.texts), batch_size), desc=f"activations {ds.name}", unit="batch",
                          leave=False):
        chunk = range(start, min(start + batch_size, len(ds.texts)))
        tokens = right_pad(model, [to_tokens(model, ds.texts[i])[0].tolist() for i in chunk])
        _, cache = model.run_with_cache(tokens, names_filter=lambda h: h in names)
        stacked = torch.stack([cache[h] for h in names], 1).float().cpu()  # batch layer pos d_model
        for b, i in enumerate(chunk):
            rows[i] = [stacked[b, :, pos].mean(1) for pos in positions[i]]
    items = [row for i in range(len(ds.texts)) for row in rows[i]]
    return Activations(torch.stack(items, 1), layers, site, ds)


def _positions(model, text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
    """Token positions covering each character span (offset-based, BOS-aware)."""
    enc = model.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    shift = to_tokens(model, text).shape[1] - len(enc["offset_mapping"])
    out = []
    for lo, hi in spans:
        inside = [i + shift for i, (a, b) in enumerate(enc["offset_mapping"]) if a < hi and b > lo]
        if not inside:
            raise InterpError(f"no token covers characters {lo}..{hi} of {text!r}")
        out.append(inside)
    return out


def grouped_split(ds: ProbeDataset, test_size: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices with no group on both sides, every class on both sides."""
    n_groups = len(set(ds.groups))
    if n_groups < 4:
        raise InterpError(f"dataset {ds.name} has {n_groups} groups; a grouped split needs at least 4")
    for attempt in range(50):
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed + attempt)
        train, test = next(gss.split(np.zeros(len(ds.y)), ds.y, ds.groups))
        if set(ds.y[train]) == set(ds.y[test]) == set(ds.y):
            return train, test
    raise InterpError(f"dataset {ds.name}: no grouped split puts every class on both sides; add groups")


def control_labels(ds: ProbeDataset, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: each word type gets a fixed random label, drawn with the
    task's class frequencies."""
    rng = np.random.default_rng(seed)
    freq = np.bincount(ds.y, minlength=len(ds.labels)) / len(ds.y)
    table = {t: int(rng.choice(len(ds.labels), p=freq)) for t in sorted(set(ds.types))}
    return np.array([table[t] for t in ds.types])


def fit_probe(X: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5, seed: int = 0):
    """StandardScaler → LogisticRegression, C chosen by grouped k-fold CV on (X, y) alone."""
    n_groups = len(set(groups))
    if len(y) < folds or n_groups < folds:
        raise InterpError(f"{len(y)} training examples in {n_groups} groups are fewer than the {folds} folds "
                          "of cross-validation; add examples or lower --folds")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    if len(set(y)) < 2:
        raise InterpError("the training split has one class only")
    search = GridSearchCV(pipe, {"logisticregression__C": list(CS)}, cv=GroupKFold(n_splits=folds))
    search.fit(X, y, groups=groups)
    return search.best_estimator_, float(search.best_params_["logisticregression__C"])


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@dataclass
class LayerProbe:
    layer: int
    accuracy: float
    ci: tuple[float, float]
    control_accuracy: float
    selectivity: float
    C: float
    direction: Float[Tensor, "cls d_model"]
    """Each class's weight vector in activation space (coefficients divided by the scaler's σ)."""
    top_dims: list[tuple[int, float]]
    """Strongest standardised coefficients (dimension, weight) of the first class row."""


@dataclass
class ProbeReport:
    dataset: str
    labels: list[str]
    site: str
    n_train: int
    n_test: int
    layers: list[LayerProbe]
    seconds: float
    chance: float
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> LayerProbe:
        return max(self.layers, key=lambda p: (p.accuracy, p.selectivity))

    @property
    def best_layer(self) -> int:
        """The layer of :attr:`best` (the JSON field of the same name)."""
        return self.best.layer

    @property
    def best_accuracy(self) -> float:
        return self.best.accuracy

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "labels": self.labels, "site": self.site, "n_train": self.n_train,
                "n_test": self.n_test, "chance": round(self.chance, 4), "layers": [p.layer for p in self.layers],
                "accuracy": [round(p.accuracy, 4) for p in self.layers],
                "ci_low": [round(p.ci[0], 4) for p in self.layers], "ci_high": [round(p.ci[1], 4) for p in self.layers],
                "control_accuracy": [round(p.control_accuracy, 4) for p in self.layers],
                "selectivity": [round(p.selectivity, 4) for p in self.layers], "C": [p.C for p in self.layers],
                "best_layer": self.best_layer, "best_accuracy": round(self.best_accuracy, 4),
                "top_coefficients": [{"dim": d, "weight": round(w, 4)} for d, w in self.best.top_dims],
                **self.extra}

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.probe_figure`)."""
        from interp.figures import probe_figure

        return probe_figure([self.to_dict()])


def probe_layers(acts: Activations, folds: int = 5, test_size: float = 0.25, seed: int = 0,
                 top_k: int = 10) -> ProbeReport:
    """Fit and score a probe and its control at every layer of ``acts``."""
    t0 = time.perf_counter()
    ds = acts.dataset
    train, test = grouped_split(ds, test_size, seed)
    control = control_labels(ds, seed)
    g_train = [ds.groups[i] for i in train]
    out = []
    for li, layer in enumerate(progress(acts.layers, desc=f"probes {ds.name}", unit="layer", leave=False)):
        X = acts.X[li].numpy()
        probe, C = fit_probe(X[train], ds.y[train], g_train, folds, seed)
        correct = int((probe.predict(X[test]) == ds.y[test]).sum())
        acc = correct / len(test)
        if len(set(control[train])) > 1:
            ctrl, _ = fit_probe(X[train], control[train], g_train, folds, seed)
            ctrl_acc = float((ctrl.predict(X[test]) == control[test]).mean())
        else:  # one control class on the training side: the control probe predicts it everywhere
            ctrl_acc = float((control[test] == control[train][0]).mean())
        scaler, lr = probe.named_steps["standardscaler"], probe.named_steps["logisticregression"]
        coef = torch.tensor(lr.coef_, dtype=torch.float32)
        direction = coef / torch.tensor(scaler.scale_, dtype=torch.float32)
        order = coef[0].abs().argsort(descending=True)[:top_k]
        out.append(LayerProbe(layer, acc, wilson(correct, len(test)), ctrl_acc, acc - ctrl_acc, C, direction,
                              [(int(d), float(coef[0, d])) for d in order]))
    chance = max(np.bincount(ds.y[test])) / len(test)
    return ProbeReport(ds.name, ds.labels, acts.site, len(train), len(test), out, time.perf_counter() - t0, chance)


def feature_cosines(direction: Float[Tensor, " d_model"], W_dec: Float[Tensor, "d_sae d_model"],
                    top_k: int = 10) -> list[dict]:
    """The SAE features (decoder rows) most aligned with a probe direction, by |cosine|."""
    if W_dec.shape[-1] != direction.shape[-1]:
        raise InterpError(f"SAE decoder width {W_dec.shape[-1]} does not match the probe's {direction.shape[-1]}")
    cos = torch.nn.functional.cosine_similarity(W_dec.float(), direction.float()[None], dim=-1)
    order = cos.abs().argsort(descending=True)[:top_k]
    return [{"feature": int(i), "cosine": round(float(cos[i]), 4)} for i in order]
