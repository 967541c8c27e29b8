"""**Fact recall over a relation** (Nanda et al. 2023, "Fact Finding"). Resample ablation
grafts one activation from another subject's prompt of the same relation (the same
template and token length, a different object) into each prompt, and measures the share
of the logit difference (own object − the other's) lost; averaged over the relation by
token role. A relation circuit is EAP's top edges on training pairs; its accuracy is
top-1 correctness on held-out subjects with every edge outside it resample-ablated.
"""

from __future__ import annotations

import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from interp.circuits.eap import build_graph, edge_attribution, edge_mask, edge_order, edge_rows, patched_edges_logits
from interp.circuits.patching import patch_sweep
from interp.errors import InterpError
from interp.knowledge.relations import Relation, Sample, _object_tokens, split_samples
from interp.knowledge.average_trace import ROLES, role_rows
from interp.knowledge.tracing import subject_span
from interp.metrics import Task, metric_per_pair, normalize
from interp.progress import progress
from interp.tokens import str_tokens, to_tokens

__all__ = ["RESAMPLE_SITES", "RelationCircuit", "ResampleSweep", "relation_circuit", "resample_pairs", "resample_sweep"]

RESAMPLE_SITES = ("resid_pre", "attn_out", "mlp_out")


# --- resample ablation over a relation ----------------------------------------------------------

def _resample_group(model, sample: Sample) -> tuple[int, tuple[int, int]]:
    """Prompts that may swap activations: the same token length and the same subject span."""
    return to_tokens(model, sample.prompt).shape[1], subject_span(model, sample.prompt, sample.subject)


def resample_pairs(model, relation: Relation, seed: int = 0, samples: Sequence[Sample] | None = None
                   ) -> list[tuple[int, int]]:
    """``(i, j)`` index pairs into ``samples`` (default: all): j is a random other subject whose
    prompt has the same token length and subject span as i's and whose object starts with
    another token. Subjects without such a partner are left out, with a note."""
    samples = list(relation.samples if samples is None else samples)
    objects = _object_tokens(model, relation, samples)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[_resample_group(model, s)].append(i)
    rng = random.Random(seed)
    pairs, lonely = [], 0
    for members in groups.values():
        for i in members:
            options = [j for j in members if objects[j] != objects[i]]
            if options:
                pairs.append((i, rng.choice(options)))
            else:
                lonely += 1
    if not pairs:
        raise InterpError(f"no two prompts of {relation.name} have the same token length and different objects; "
                          "resampling grafts activations between prompts of equal length: add subjects that "
                          "tokenize alike")
    if lonely:
        print(f"interp: note: {lonely} of {len(samples)} subjects of {relation.name} have no partner of the same "
              "token length with another object; they are left out of resampling", file=sys.stderr)
    return pairs


def _group_tasks(model, relation: Relation, samples: list[Sample], pairs: list[tuple[int, int]]
                 ) -> list[tuple[Task, tuple[int, int]]]:
    """One :class:`Task` per (token length, subject span): clean = sample i, corrupt = sample j,
    answer = i's object, wrong = j's object; with the group's subject span."""
    objects = _object_tokens(model, relation, samples) if pairs else None
    by: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for i, j in pairs:
        by[_resample_group(model, samples[i])].append((i, j))
    tasks = []
    for (_, span), group in by.items():
        clean = torch.cat([to_tokens(model, samples[i].prompt) for i, _ in group])
        corrupt = torch.cat([to_tokens(model, samples[j].prompt) for _, j in group])
        answer = objects[[i for i, _ in group]].to(clean.device)
        wrong = objects[[j for _, j in group]].to(clean.device)
        tasks.append((Task(clean, corrupt, answer, wrong, str_tokens(model, clean[0]),
                           str_tokens(model, corrupt[0])), span))
    return tasks


@dataclass
class ResampleSweep:
    """Share of the logit difference lost when one activation is resampled, by token role and layer."""

    relation: str
    effects: dict[str, Tensor]
    """Site → ``[role, layer]``: 1 − the normalised metric (0: nothing lost, 1: all of it)."""
    roles: tuple[str, ...]
    n_pairs: int
    n_groups: int
    clean_baseline: float
    """Mean logit difference (own object − the other's) of the clean prompts."""
    corrupt_baseline: float
    """The same on the resampled prompts (negative when they say the other object)."""
    seconds: float
    axes: tuple[str, ...] = ("role", "layer")

    def figure(self):
        """This sweep as a plotly figure (:func:`interp.figures.resample_figure`)."""
        from interp.figures import resample_figure

        return resample_figure(self)


def resample_sweep(model, relation: Relation, sites: Sequence[str] = RESAMPLE_SITES, seed: int = 0,
                   max_pairs: int | None = None) -> ResampleSweep:
    """Resample ablation of every (layer, position) of each site, averaged over the relation by
    token role (weighted by the pairs of each token-length group)."""
    t0 = time.perf_counter()
    pairs = resample_pairs(model, relation, seed)
    if max_pairs:
        pairs = pairs[:max_pairs]
    tasks = _group_tasks(model, relation, relation.samples, pairs)
    n_layers = model.cfg.n_layers
    sums = {site: torch.zeros(len(ROLES), n_layers) for site in sites}
    weights = {site: torch.zeros(len(ROLES), 1) for site in sites}
    clean_m = corrupt_m = 0.0
    for task, span in progress(tasks, desc=f"resampling {relation.name}", unit="group", disable=len(tasks) < 2):
        for site in sites:
            res = patch_sweep(model, task, site, "noise", "logit_diff")
            lost = 1.0 - normalize(res.values, res.clean_baseline, res.corrupt_baseline)  # layer, pos
            rows = role_rows(lost.T, span)  # role, layer
            ok = ~rows.isnan()
            sums[site] += torch.where(ok, rows, torch.zeros_like(rows)) * task.n_pairs
            weights[site] += ok[:, :1].float() * task.n_pairs
        clean_m += res.clean_baseline * task.n_pairs
        corrupt_m += res.corrupt_baseline * task.n_pairs
    total = sum(t.n_pairs for t, _ in tasks)
    effects = {site: sums[site] / weights[site] for site in sites}  # NaN for a role no prompt has
    return ResampleSweep(relation.name, effects, ROLES, total, len(tasks), clean_m / total, corrupt_m / total,
                         time.perf_counter() - t0)


# --- a circuit for the relation -----------------------------------------------------------------

@dataclass
class RelationCircuit:
    """Held-out accuracy of the relation's EAP circuit at several sizes."""

    relation: str
    sizes: list[int]
    accuracy: list[float]
    """Top-1 correct on held-out pairs with every edge outside the circuit resample-ablated."""
    faithfulness: list[float]
    """Held-out normalised logit difference, ``(m_circuit − m_ablated) / (m_model − m_ablated)``."""
    model_accuracy: float
    ablated_accuracy: float
    """Accuracy with every edge resample-ablated (no circuit)."""
    n_edges_total: int
    n_train: int
    n_test: int
    top_edges: list[dict]
    seconds: float

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.relation_circuit_figure`)."""
        from interp.figures import relation_circuit_figure

        return relation_circuit_figure(self)


def relation_circuit(model, relation: Relation, sizes: Sequence[int] = (50, 100, 200, 500, 1000, 2000, 5000),
                     seed: int = 0) -> RelationCircuit:
    """EAP on the relation's training pairs (scores averaged over token-length groups, weighted by
    pairs), then each size's top edges scored on held-out subjects."""
    t0 = time.perf_counter()
    train, test = split_samples(relation, seed)
    tr_pairs = resample_pairs(model, relation, seed, train)
    te_pairs = resample_pairs(model, relation, seed + 1, test)
    graph = build_graph(model)
    total = int(graph.valid.sum())
    scores = torch.zeros(graph.valid.shape)
    n_tr = 0
    for task, _ in progress(_group_tasks(model, relation, train, tr_pairs), desc="EAP", unit="group", leave=False):
        scores += edge_attribution(model, task).scores * task.n_pairs
        n_tr += task.n_pairs
    scores /= n_tr
    order = edge_order(graph, scores)
    te_tasks = _group_tasks(model, relation, test, te_pairs)

    def evaluate(keep: Tensor) -> tuple[float, float]:
        hits, diff, m = 0.0, 0.0, 0
        for task, _ in te_tasks:
            logits = patched_edges_logits(model, task, keep).float().cpu()
            a, w = task.answer.cpu(), task.wrong.cpu()
            hits += (logits.argmax(-1) == a).sum().item()
            diff += metric_per_pair(logits, a, w, "logit_diff").sum().item()
            m += task.n_pairs
        return hits / m, diff / m

    full_acc, full_m = evaluate(graph.valid.clone())
    none_acc, none_m = evaluate(torch.zeros_like(graph.valid))
    sizes = [min(k, total) for k in sizes]
    acc, faith = [], []
    for k in progress(sizes, desc="circuit sizes", unit="size", leave=False):
        a, m = evaluate(edge_mask(graph, order[:k]))
        acc.append(a)
        faith.append((m - none_m) / (full_m - none_m) if abs(full_m - none_m) > 1e-6 else float("nan"))
    top = edge_rows(graph, scores, order[:20])
    n_te = sum(t.n_pairs for t, _ in te_tasks)
    return RelationCircuit(relation.name, sizes, acc, faith, full_acc, none_acc, total, n_tr, n_te, top,
                           time.perf_counter() - t0)
