"""The graph viewer's operations (interp.circuits.graph_view) and layout, against naive references: ids
that find their adjacency rows, ranked neighbours, the pinned subgraph's edges, supernode sums, qParams,
and a layout in which no two nodes overlap."""

import itertools

import numpy as np
import pytest

from interp.circuits.graph import attribution_graph
from interp.circuits.graph_json import node_ids, validate_graph_json
from interp.circuits.graph_view import (SUPERNODE, merge_supernodes, node_links, parse_supernodes, q_params, subgraph,
                                       without_kind)
from interp.errors import InterpError
from interp.figures import graph_figure, graph_layout, readable_id
from tests.test_graph import PROMPT, random_set


@pytest.fixture(scope="module")
def graph(tiny_models):
    model = tiny_models["tiny-llama"]
    return attribution_graph(model, random_set(model, seed=7), PROMPT, batch=16)


def test_node_ids_find_their_rows_and_read_as_people_write_them(graph):
    ids = node_ids(graph)
    assert len(ids) == len(set(ids)) == graph.n_nodes
    doc = graph.to_json(0.8, 0.98)
    for n in doc["nodes"]:  # every node the file holds sits at the row its id names
        i = ids.index(n["node_id"])
        assert graph.node(i)["position"] == n["ctx_idx"] or n["feature_type"] == "logit"
    feat = next(n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, f, pos = feat["node_id"].split("_")
    assert readable_id(feat, graph.token_text) == f"L{layer} #{f} @{pos} {graph.token_text[int(pos)]!r}"
    logit = next(n for n in doc["nodes"] if n["feature_type"] == "logit" and n["is_target_logit"])
    assert readable_id(logit, graph.token_text) == f"logit {graph.logit_text[0]!r}"


def test_a_nodes_ranked_links_are_its_adjacency_row_and_column_sorted_by_magnitude(graph):
    ids = node_ids(graph)
    i = 0  # the most influential feature
    ins, outs = node_links(graph, ids, ids[i], k=5)
    row = sorted(((ids[j], float(graph.adjacency[i, j])) for j in range(graph.n_nodes) if graph.adjacency[i, j]),
                 key=lambda p: -abs(p[1]))[:5]
    col = sorted(((ids[j], float(graph.adjacency[j, i])) for j in range(graph.n_nodes) if graph.adjacency[j, i]),
                 key=lambda p: -abs(p[1]))[:5]
    assert [w for _, w in ins] == pytest.approx([w for _, w in row]) and {s for s, _ in ins} == {s for s, _ in row}
    assert [w for _, w in outs] == pytest.approx([w for _, w in col])
    with pytest.raises(InterpError, match="no node '99_1_1'"):
        node_links(graph, ids, "99_1_1")


def test_the_pinned_subgraph_holds_the_pinned_nodes_the_logits_and_every_direct_edge_among_them(graph):
    ids = node_ids(graph)
    doc = graph.to_json(0.8, 0.98)
    pinned = [ids[0], ids[1], ids[graph.n_features - 1]]  # the last feature is pruned away at 0.8
    sub = subgraph(graph, doc, ids, pinned)
    validate_graph_json(sub)
    logits = ids[graph.logit_slice]
    assert [n["node_id"] for n in sub["nodes"]] == pinned + logits
    keep = [ids.index(i) for i in pinned + logits]
    naive = {(ids[s], ids[t]): float(graph.adjacency[t, s]) for s, t in itertools.product(keep, keep)
             if graph.adjacency[t, s] != 0}
    assert {(lk["source"], lk["target"]): lk["weight"] for lk in sub["links"]} == naive
    assert naive  # features reach the logits directly


def test_supernode_links_are_the_sums_of_their_members_links(graph):
    doc = graph.to_json(0.95, 0.99)
    feats = [n["node_id"] for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    a, b = feats[:2], feats[2:4]
    groups = parse_supernodes(f"say it: {a[0]}, {a[1]}\n\nother: {b[0]} {b[1]} 99_9_9")
    assert groups == [["say it", *a], ["other", *b, "99_9_9"]]
    merged = merge_supernodes(doc, groups)
    owner = {m: "supernode:say it" for m in a} | {m: "supernode:other" for m in b}
    naive: dict = {}
    for lk in doc["links"]:  # the textbook merge: relabel each end, drop self-loops, add up
        s, t = owner.get(lk["source"], lk["source"]), owner.get(lk["target"], lk["target"])
        if s != t:
            naive[(s, t)] = naive.get((s, t), 0.0) + lk["weight"]
    got = {(lk["source"], lk["target"]): lk["weight"] for lk in merged["links"]}
    assert got.keys() == naive.keys() and all(got[k] == pytest.approx(naive[k]) for k in naive)
    sn = {n["node_id"]: n for n in merged["nodes"] if n["feature_type"] == SUPERNODE}
    assert set(sn) == {"supernode:say it", "supernode:other"} and sn["supernode:other"]["members"] == b
    assert not set(a + b) & {n["node_id"] for n in merged["nodes"]}
    graph_figure(merged)  # draws
    bare = without_kind(doc, "mlp reconstruction error")
    errors = {n["node_id"] for n in doc["nodes"] if n["feature_type"] == "mlp reconstruction error"}
    assert errors and {n["node_id"] for n in bare["nodes"]} == {n["node_id"] for n in doc["nodes"]} - errors
    assert bare["links"] == [lk for lk in doc["links"] if not {lk["source"], lk["target"]} & errors]
    for bad in ("no colon here", "label:", ": 1_2_3"):
        with pytest.raises(InterpError, match="label: 12_345_6"):
            parse_supernodes(bad)
    assert q_params(a, groups, a[0]) == {"pinnedIds": a, "supernodes": groups, "linkType": "both",
                                         "clickedId": a[0], "sg_pos": ""}


def test_the_layout_spreads_a_crowded_cell_into_rows_and_the_figure_says_what_it_draws(graph):
    doc = graph.to_json(1.0, 1.0)  # every node: cells of many features
    pos = graph_layout(doc)
    pts = np.array(list(pos.values()))
    gaps = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)) + np.eye(len(pts))
    assert gaps.min() > 0.02  # no two nodes on one spot
    for n in doc["nodes"]:  # each stays inside its own (position, layer) cell
        x, y = pos[n["node_id"]]
        assert abs(x - n["ctx_idx"]) < 0.5 and abs(y - (-1 if n["layer"] == "E" else int(n["layer"]))) < 0.5
    clicked = doc["links"][0]["target"]
    fig = graph_figure(doc, max_links=50, clicked=clicked, hover={clicked: "top: 'Paris'"})
    assert f"drawing 50 of {len(doc['links']):,} links" in fig.layout.annotations[0].text
    lines = [t for t in fig.data if t.mode == "lines"]
    assert all(t.hoverinfo == "skip" for t in lines)  # links never take a click from a node
    assert len({t.line.width for t in lines}) > 2  # widths follow |weight|
    nodes = [t for t in fig.data if t.mode == "markers+text"]
    assert sum(len(t.customdata) for t in nodes) == len(doc["nodes"])
    texts = {c: (tx, h) for t in nodes for c, tx, h in zip(t.customdata, t.text, t.hovertext)}
    assert "top: 'Paris'" in texts[clicked][1]
    top = sorted((n for n in doc["nodes"] if n["feature_type"] == "logit"), key=lambda n: -n["token_prob"])
    assert all(texts[n["node_id"]][0] for n in top[:5]) and not any(texts[n["node_id"]][0] for n in top[5:])
    sides = [p for t in nodes for p, tx in zip(t.textposition, t.text) if tx]
    assert {"top center", "bottom center"} <= set(sides)  # labels alternate, so neighbours do not overlap
