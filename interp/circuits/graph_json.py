"""circuit-tracer's graph JSON (``metadata``, ``qParams``, ``nodes``, ``links``), so its frontend and
Neuronpedia open the workbench's attribution graphs: the writer, and the validator that reads a
file back. docs/graph_json.md documents each field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from interp.errors import InterpError

if TYPE_CHECKING:
    from interp.circuits.graph import AttributionGraph

__all__ = ["FEATURE_TYPES", "GRAPH_SCHEMA_VERSION", "INDEX", "NODE_FIELDS", "add_to_index", "ct_node", "graph_to_json", "node_ids",
           "read_graph_json", "validate_graph_json"]

GRAPH_SCHEMA_VERSION = 1


def graph_to_json(g: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98,
                  slug: str = "graph", scan: str = "") -> dict:
    """circuit-tracer's graph JSON of the pruned graph (docs/graph_json.md)."""
    p = g.prune(node_threshold, edge_threshold)
    keep = np.nonzero(p.node_mask.numpy())[0]
    infl, cumulative = p.node_influence.numpy(), p.cumulative.numpy()
    from interp.circuits.graph_trust import untrusted_nodes

    marked = untrusted_nodes(g)
    ids: dict[int, str] = {}
    nodes = []
    for i in keep:
        n = g.node(int(i))
        d = ct_node(n, g, float(infl[i]), float(cumulative[i]))
        if int(i) in marked:  # an extra field: circuit-tracer's frontend reads the ones it knows
            d["untrusted"] = marked[int(i)]
        ids[int(i)] = d["node_id"]
        nodes.append(d)
    em = p.edge_mask.numpy()
    dst, src = np.nonzero(em)
    links = [{"source": ids[int(s)], "target": ids[int(t)], "weight": float(g.adjacency[t, s])}
             for t, s in zip(dst, src) if int(s) in ids and int(t) in ids]
    used = {lk["source"] for lk in links} | {lk["target"] for lk in links}
    nodes = [n for n in nodes if n["node_id"] in used or n["feature_type"] in ("embedding", "logit")]
    return {"metadata": {"slug": slug, "scan": scan or g.model_name, "transcoder_list": [],
                         "prompt_tokens": g.token_text, "prompt": g.prompt, "node_threshold": node_threshold,
                         "schema_version": GRAPH_SCHEMA_VERSION,
                         "info": {"creator": "interp", "model": g.model_name, "edge_threshold": edge_threshold,
                                  "first_position_errors": g.first_position_errors}},
            "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
            "nodes": nodes, "links": links}


INDEX = "graph-metadata.json"
"""The file beside graph files that lists them for circuit-tracer's frontend: ``{"graphs": [metadata, ...]}``."""
INDEX_FIELDS = ("slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold", "schema_version")
"""Each listed graph's fields (circuit-tracer's ``Metadata``)."""


def add_to_index(graph_file: str | Path, doc: dict) -> Path:
    """List a written graph in :data:`INDEX` beside it (replacing a graph of the same slug), as
    circuit-tracer's ``create_graph_files`` does, so its frontend can serve the folder. Written
    atomically; an index that is not one is refused in one line, not overwritten."""
    import json

    from interp._files import read_json
    from interp.cache import atomic_path

    index = Path(graph_file).parent / INDEX
    listed = {"graphs": []}
    if index.exists():
        listed = read_json(str(index), "", "graph index")
        if not isinstance(listed, dict) or not isinstance(listed.get("graphs"), list):
            raise InterpError(f"{index} is not a graph index (an object with a graphs list); move it away")
    meta = {k: doc["metadata"][k] for k in INDEX_FIELDS if k in doc["metadata"]}
    listed["graphs"] = [m for m in listed["graphs"] if not (isinstance(m, dict) and m.get("slug") == meta["slug"])]
    listed["graphs"].append(meta)
    with atomic_path(index) as tmp:
        tmp.write_text(json.dumps(listed, indent=1))
    return index


NODE_FIELDS = {"node_id": str, "feature": int, "layer": str, "ctx_idx": int, "feature_type": str,
               "token_prob": (int, float), "is_target_logit": bool, "run_idx": int, "reverse_ctx_idx": int,
               "jsNodeId": str, "clerp": str, "influence": (int, float, type(None)),
               "activation": (int, float, type(None))}
"""circuit-tracer's node fields and their JSON types (docs/graph_json.md)."""
FEATURE_TYPES = ("cross layer transcoder", "mlp reconstruction error", "embedding", "logit")


def validate_graph_json(doc: dict, where: str = "the graph") -> dict:
    """Refuse, in one line, a document that is not a graph of this schema version; return it."""
    if not isinstance(doc, dict) or not {"metadata", "qParams", "nodes", "links"} <= set(doc):
        raise InterpError(f"{where} is not a graph file: it needs metadata, qParams, nodes and links")
    for key, typ in (("metadata", dict), ("qParams", dict), ("nodes", list), ("links", list)):
        if not isinstance(doc[key], typ):
            raise InterpError(f"{where}: {key} is a JSON {_json_type(doc[key])}, not {_json_type(typ())}")
    version = doc["metadata"].get("schema_version")
    if version != GRAPH_SCHEMA_VERSION:
        raise InterpError(f"{where} has graph schema version {version!r}; this workbench reads version "
                          f"{GRAPH_SCHEMA_VERSION}")
    for key, typ in (("slug", str), ("scan", str), ("prompt_tokens", list), ("prompt", str)):
        if key not in doc["metadata"]:
            raise InterpError(f"{where}: metadata lacks {key}")
        if not isinstance(doc["metadata"][key], typ):
            raise InterpError(f"{where}: metadata.{key} is a JSON {_json_type(doc['metadata'][key])}, "
                              f"not {_json_type(typ())}")
    if not all(isinstance(t, str) for t in doc["metadata"]["prompt_tokens"]):
        raise InterpError(f"{where}: metadata.prompt_tokens must be a list of strings")
    ids = set()
    for i, n in enumerate(doc["nodes"]):
        if not isinstance(n, dict):
            raise InterpError(f"{where}: node {i} is a JSON {_json_type(n)}, not an object")
        for key, typ in NODE_FIELDS.items():
            if key not in n or not isinstance(n[key], typ) or (typ is int and isinstance(n[key], bool)):
                raise InterpError(f"{where}: node {n.get('node_id', '?')} has no valid {key}")
        if n["feature_type"] not in FEATURE_TYPES:
            raise InterpError(f"{where}: node {n['node_id']} has feature_type {n['feature_type']!r}")
        if n["node_id"] in ids:
            raise InterpError(f"{where}: node id {n['node_id']} appears twice")
        ids.add(n["node_id"])
    for lk in doc["links"]:
        if not (isinstance(lk, dict) and isinstance(lk.get("source"), str) and isinstance(lk.get("target"), str)
                and lk["source"] in ids and lk["target"] in ids
                and isinstance(lk.get("weight"), (int, float)) and not isinstance(lk.get("weight"), bool)):
            raise InterpError(f"{where}: a link {str(lk)[:80]} does not join two nodes with a weight")
    return doc


def read_graph_json(path: str) -> dict:
    """A graph file written by ``interp graph --out``, validated; one line for anything else (a
    directory, a missing file, non-UTF-8 bytes, not JSON, another schema)."""
    from pathlib import Path

    from interp._files import read_json

    if Path(path).is_dir():
        raise InterpError(f"{path} is a directory; give a graph JSON file (interp graph --out FILE)")
    return validate_graph_json(read_json(path, "", "graph file"), path)


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def node_ids(g: AttributionGraph) -> list[str]:
    """circuit-tracer's node id of every node of ``g``, in the adjacency's order (features, errors, tokens,
    logits), so that an id from a file or a click finds its row."""
    return ([f"{layer}_{f}_{pos}" for layer, pos, f in g.features.tolist()]
            + [f"{layer}_-1_{pos}" for layer in range(g.n_layers) for pos in range(g.n_pos)]
            + [f"E_{v}_{pos}" for pos, v in enumerate(g.tokens)]
            + [f"{g.n_layers + 1}_{v}_{g.n_pos - 1}" for v in g.logit_tokens])


def ct_node(n: dict, g: AttributionGraph, infl: float, cumulative: float | None = None) -> dict:
    """One node in circuit-tracer's fields (its frontend's ``Node`` model): ``influence`` is its cumulative
    share (:func:`interp.circuits.graph_pruning.cumulative_share`, what its frontend filters on), and
    ``raw_influence``, an extra field, the node's own influence on the logits."""
    layer, pos = n["layer"], n["position"]
    base = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": "",
            "influence": cumulative, "raw_influence": infl, "activation": None}
    if n["kind"] == "feature":
        f = n["feature"]
        return {**base, "node_id": f"{layer}_{f}_{pos}", "feature": (layer + f) * (layer + f + 1) // 2 + f,
                "layer": str(layer), "ctx_idx": pos, "feature_type": "cross layer transcoder",
                "jsNodeId": f"{layer}_{f}-0", "clerp": n["label"], "activation": n["activation"]}
    if n["kind"] == "error":
        return {**base, "node_id": f"{layer}_-1_{pos}", "feature": -1, "layer": str(layer), "ctx_idx": pos,
                "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_-1-{pos}"}
    if n["kind"] == "token":
        v = n["feature"]
        return {**base, "node_id": f"E_{v}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos,
                "feature_type": "embedding", "jsNodeId": f"E_{v}-{pos}"}
    v, prob = n["feature"], n["activation"]
    j = g.logit_tokens.index(v)
    return {**base, "node_id": f"{g.n_layers + 1}_{v}_{pos}", "feature": v, "layer": str(g.n_layers + 1),
            "ctx_idx": pos, "feature_type": "logit", "token_prob": prob, "is_target_logit": j == 0,
            "jsNodeId": f"L_{v}-{pos}", "clerp": f'Output "{g.logit_text[j]}" (p={prob:.3f})', "influence": None,
            "raw_influence": None}

