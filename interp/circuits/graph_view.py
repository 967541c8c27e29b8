"""What a graph viewer does with an attribution graph beyond drawing it: a node's strongest inputs and
outputs, the subgraph of pinned nodes with their logits, a view without one kind of node (error nodes),
supernodes (features grouped under one label, whose links are the sums of their members' links), and
the ``qParams`` in which circuit-tracer's frontend saves a pinned view.

Nodes and links are in circuit-tracer's graph JSON (:mod:`interp.circuits.graph_json`); the links of
a subgraph and a node's ranked neighbours come from the whole adjacency, not from the pruned links,
so a pinned pair that pruning separated still shows its direct edge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from interp.errors import InterpError
from interp.figures.attribution_graph import node_weight

if TYPE_CHECKING:
    from interp.circuits.graph import AttributionGraph

__all__ = ["SUPERNODE", "merge_supernodes", "node_links", "parse_supernodes", "q_params", "subgraph",
           "without_kind"]

SUPERNODE = "supernode"
"""The ``feature_type`` of a merged node (a viewer's own; circuit-tracer keeps supernodes in ``qParams``)."""


def node_links(g: AttributionGraph, ids: list[str], node_id: str, k: int = 10) -> tuple[list[tuple[str, float]],
                                                                                    list[tuple[str, float]]]:
    """The ``k`` strongest inputs and outputs of a node by |weight|, from the whole adjacency:
    ([(source id, weight)], [(target id, weight)]). ``ids`` is :func:`~interp.circuits.graph_json.node_ids`."""
    i = _index(ids, node_id)
    row, col = g.adjacency[i], g.adjacency[:, i]
    return _ranked(ids, row, k), _ranked(ids, col, k)


def _ranked(ids: list[str], weights: np.ndarray, k: int) -> list[tuple[str, float]]:
    order = np.argsort(-np.abs(weights), kind="stable")[:k]
    return [(ids[j], float(weights[j])) for j in order if weights[j] != 0]


def _index(ids: list[str], node_id: str) -> int:
    try:
        return ids.index(node_id)
    except ValueError:
        raise InterpError(f"no node {node_id!r} in this graph (ids are layer_feature_position, as the viewer "
                          "shows them; a capped graph keeps only its top features)") from None


def subgraph(g: AttributionGraph, doc: dict, ids: list[str], pinned: list[str]) -> dict:
    """The graph JSON of the pinned nodes and the graph's logits, with every nonzero direct edge among them
    from the whole adjacency. Pinned nodes that the pruned ``doc`` dropped are rebuilt from ``g``."""
    from interp.circuits.graph_json import ct_node

    keep = list(dict.fromkeys([*pinned, *ids[g.logit_slice]]))
    rows = [_index(ids, i) for i in keep]
    have = {n["node_id"]: n for n in doc["nodes"]}
    nodes = [have.get(ids[r]) or ct_node(g.node(r), g, 0.0) for r in rows]
    links = [{"source": ids[s], "target": ids[t], "weight": float(g.adjacency[t, s])}
             for t in rows for s in rows if g.adjacency[t, s] != 0]
    return {**doc, "nodes": nodes, "links": links}


def without_kind(doc: dict, kind: str) -> dict:
    """``doc`` without its nodes of ``feature_type`` ``kind`` and every link to or from them."""
    gone = {n["node_id"] for n in doc["nodes"] if n["feature_type"] == kind}
    return {**doc, "nodes": [n for n in doc["nodes"] if n["node_id"] not in gone],
            "links": [lk for lk in doc["links"] if lk["source"] not in gone and lk["target"] not in gone]}


def parse_supernodes(text: str) -> list[list[str]]:
    """Supernodes as a person types them, one per line, ``label: id, id, ...``, in circuit-tracer's form
    ``[[label, id, ...], ...]``; one clear line for a line without a label or members."""
    groups = []
    for line in text.splitlines():
        if not line.strip():
            continue
        label, sep, rest = line.partition(":")
        members = [m for m in (p.strip() for p in rest.replace(",", " ").split()) if m]
        if not sep or not label.strip() or not members:
            raise InterpError(f"supernode line {line.strip()!r}: write it as 'label: 12_345_6, 12_401_6'")
        groups.append([label.strip(), *members])
    return groups


def merge_supernodes(doc: dict, supernodes: list[list[str]]) -> dict:
    """``doc`` with each supernode's members (those present) replaced by one node: its layer the members'
    mean (rounded), its position their last, its influence their sum; each link to or from a member moves
    to the supernode and links that now join the same pair add up; links inside a supernode go."""
    owner: dict[str, str] = {}
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    merged = []
    for label, *members in supernodes:
        present = [nodes[m] for m in members if m in nodes and m not in owner]
        if not present:
            continue
        sid = f"supernode:{label}"
        for m in present:
            owner[m["node_id"]] = sid
        layers = [float(m["layer"]) if m["layer"] != "E" else -1.0 for m in present]
        merged.append({**present[0], "node_id": sid, "jsNodeId": sid, "feature": -1, "feature_type": SUPERNODE,
                       "layer": str(round(sum(layers) / len(layers))), "ctx_idx": max(m["ctx_idx"] for m in present),
                       "clerp": label, "influence": None,
                       "raw_influence": sum(node_weight(m) for m in present),
                       "activation": None, "members": [m["node_id"] for m in present]})
    summed: dict[tuple[str, str], float] = {}
    for lk in doc["links"]:
        s, t = owner.get(lk["source"], lk["source"]), owner.get(lk["target"], lk["target"])
        if s != t:
            summed[(s, t)] = summed.get((s, t), 0.0) + lk["weight"]
    kept = [n for n in doc["nodes"] if n["node_id"] not in owner]
    return {**doc, "nodes": kept + merged,
            "links": [{"source": s, "target": t, "weight": w} for (s, t), w in summed.items()]}


def q_params(pinned: list[str], supernodes: list[list[str]], clicked: str = "", link_type: str = "both") -> dict:
    """circuit-tracer's frontend state as its graph files keep it: pinned ids, supernodes as
    ``[label, member, ...]``, the clicked node, which links to show and the subgraph's positions."""
    return {"pinnedIds": list(pinned), "supernodes": [list(s) for s in supernodes], "linkType": link_type,
            "clickedId": clicked or "", "sg_pos": ""}
