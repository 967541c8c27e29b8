"""Steering vectors: push the residual stream along a concept direction while generating.

A direction comes from labelled activations at one layer (:mod:`interp.representations.probes`):
the difference of class means (Turner et al. 2023's ActAdd uses a contrast pair;
the mean over many pairs is the same idea, less noisy) or a probe's weight vector.
:func:`steer` adds ``α·v`` to ``blocks.{layer}.hook_resid_post`` at every position of
every forward pass, prompt and generated tokens alike, and removes the hook on exit.

:func:`steering_curve` measures what steering does: generations at each α, scored
by a classifier that reads them with the *unsteered* model (the sentiment probe at
its best layer, say), so the score is an independent reading of the text.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError, check_index
from interp.generation import generate
from interp.representations.probes import Activations, ProbeDataset, collect_activations, fit_probe
from interp.progress import progress

__all__ = ["SteeringCurve", "mean_difference", "probe_direction", "probe_scorer", "steer",
    "steering_curve"]


def mean_difference(acts: Activations, layer: int, positive: str) -> Float[Tensor, " d_model"]:
    """mean(activations of ``positive``) − mean(activations of the other classes) at ``layer``."""
    ds = acts.dataset
    if positive not in ds.labels:
        raise InterpError(f"label {positive!r} is not one of {ds.labels}")
    X = acts.X[acts.layers.index(layer)]
    pos = torch.from_numpy(ds.y == ds.labels.index(positive))
    return X[pos].mean(0) - X[~pos].mean(0)


def probe_direction(acts: Activations, layer: int, positive: str, folds: int = 5) -> Float[Tensor, " d_model"]:
    """A binary probe's weight vector in activation space, scaled to the mean-difference norm so
    that α means the same for both kinds of direction."""
    ds = acts.dataset
    X = acts.X[acts.layers.index(layer)].numpy()
    y = (ds.y == ds.labels.index(positive)).astype(int)
    probe, _ = fit_probe(X, y, ds.groups, folds)
    scaler, lr = probe.named_steps["standardscaler"], probe.named_steps["logisticregression"]
    w = torch.tensor(lr.coef_[0] / scaler.scale_, dtype=torch.float32)
    return w / w.norm() * mean_difference(acts, layer, positive).norm()


@contextlib.contextmanager
def steer(model, vector: Float[Tensor, " d_model"], alpha: float, layer: int) -> Iterator[None]:
    """Within the block, every forward adds ``alpha * vector`` to the residual after ``layer``."""
    layer = check_index(layer, model.cfg.n_layers, "layer")
    v = (alpha * vector).to(model.cfg.device)

    def add(resid, *, hook):
        return resid + v.to(resid.dtype)

    with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_post", add)]):
        yield


@dataclass
class SteeringCurve:
    """Mean classifier score of the generations at each α (``scores[alpha][prompt]``)."""

    alphas: list[float]
    mean_score: list[float]
    scores: list[list[float]]
    generations: list[list[str]]
    prompts: list[str]
    layer: int
    seconds: float

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.steering_figure`)."""
        from interp.figures import steering_figure

        return steering_figure(self)


def steering_curve(model, vector: Float[Tensor, " d_model"], layer: int, alphas: Sequence[float],
                   prompts: Sequence[str], scorer: Callable[[list[str]], np.ndarray],
                   max_new_tokens: int = 30, seed: int = 0) -> SteeringCurve:
    """Generate from every prompt at every α (top-20 samples, prompt i seeded ``seed + i`` at every α,
    all prompts in one cached batch), then score all texts at once."""
    if not prompts:
        raise InterpError("steering needs at least one prompt")
    t0 = time.perf_counter()
    texts: list[list[str]] = []
    for a in progress(list(alphas), desc="steering", unit="alpha"):
        with steer(model, vector, a, layer):
            texts.append(generate(model, list(prompts), max_new_tokens, mode="sample", top_k=20, seed=seed))
    flat = [t for row in texts for t in row]
    scored = np.asarray(scorer(flat), dtype=float).reshape(len(texts), len(prompts))
    return SteeringCurve(list(alphas), scored.mean(1).tolist(), scored.tolist(), texts, list(prompts), layer,
                         time.perf_counter() - t0)


def _mean_pooled(ds: ProbeDataset) -> ProbeDataset:
    """The same texts read as the mean over all their tokens (robust for free-running text)."""
    return ProbeDataset(ds.name, "sequence", "mean", ds.labels, ds.texts, [[(0, len(t))] for t in ds.texts],
                        list(range(len(ds.texts))), ds.y, ds.groups, ds.types, ds.description)


def probe_scorer(model, train: ProbeDataset, layer: int, positive: str, folds: int = 5
                 ) -> Callable[[list[str]], np.ndarray]:
    """P(positive) from a mean-pooled probe fitted on ``train`` at ``layer``. It reads texts with
    the model as it is when the scorer runs: call it outside any :func:`steer` block."""
    if train.task != "sequence":
        raise InterpError("a steering scorer needs a sequence-level dataset")
    acts = collect_activations(model, _mean_pooled(train), [layer])
    y = (train.y == train.labels.index(positive)).astype(int)
    probe, _ = fit_probe(acts.X[0].numpy(), y, train.groups, folds)

    def score(texts: list[str]) -> np.ndarray:
        texts = [t if t.strip() else "." for t in texts]
        n = len(texts)
        ds = ProbeDataset("generations", "sequence", "mean", ["other", positive], texts,
                          [[(0, len(t))] for t in texts], list(range(n)), np.zeros(n, dtype=int),
                          [str(i) for i in range(n)], texts)
        return probe.predict_proba(collect_activations(model, ds, [layer]).X[0].numpy())[:, 1]

    return score
