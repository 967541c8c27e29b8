"""``interp graph``: the attribution graph of a prompt on a transcoder set, its scores, top paths,
interventions, circuit-tracer's graph JSON and a figure. ``--read`` summarises a written graph file."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from interp.cli._common import AddParser, ablation, count, fraction, model_of, refuse_unused, steering
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]


_DEFAULTS: dict[str, object] = {}
"""Each flag's default, to tell which flags the user gave (``--read`` refuses the ones it would ignore)."""
_READ_USES = {"verb", "read", "json"}


def add_parsers(add: AddParser) -> None:
    g = add("graph", "attribution graph (Ameisen et al. 2025) of a prompt's next token on a transcoder set: "
                     "features, error nodes, tokens and logits through frozen attention; pruning, scores, "
                     "top paths, interventions; circuit-tracer's graph JSON")
    g.add_argument("--prompt", help="the text whose next token to explain")
    g.add_argument("--transcoders", help="a transcoder set (interp sae train --transcoder; circuit-tracer; sparsify)")
    g.add_argument("--target", help="the logit to explain first (one token; default: the most likely)")
    g.add_argument("--node-threshold", type=fraction, default=0.8, help="share of influence the kept nodes reach")
    g.add_argument("--edge-threshold", type=fraction, default=0.98, help="share of edge influence the kept edges reach")
    g.add_argument("--max-feature-nodes", type=count, default=4096,
                   help="feature nodes kept, by influence (a long prompt has tens of thousands)")
    g.add_argument("--max-logits", type=count, default=10)
    g.add_argument("--logit-prob", type=fraction, default=0.95, help="... or fewer logits reaching this probability")
    g.add_argument("--batch", type=count, default=32, help="targets per backward pass")
    g.add_argument("--first-position-errors", choices=("auto", "keep", "zero"), default="auto",
                   help="position 0 (the attention sink) has no features: zero its error nodes into the biases "
                        "(circuit-tracer's convention) or keep them as sources; auto zeroes them where position 0 "
                        "is a BOS and keeps them where it is the prompt's first token")
    g.add_argument("--store", help="a feature store of these transcoders: labels come from its explanations "
                                   "or top activations")
    g.add_argument("--ablate", type=ablation, action="append", default=[], metavar="L:F[@pos]",
                   help="set an active feature to zero and compare frozen, predicted and real logits (repeatable)")
    g.add_argument("--steer", type=steering, action="append", default=[], metavar="L:F[@pos]=v",
                   help="set an active feature to a value, likewise (repeatable; an inactive feature has no node "
                        "in the graph and cannot be set)")
    g.add_argument("--out", help="write the pruned graph as circuit-tracer's graph JSON here")
    g.add_argument("--html", help="write the graph figure here")
    g.add_argument("--read", help="summarise a graph JSON written before (no model; no other flag applies)")
    g.add_argument("--force", action="store_true", help="use transcoders whose set names another model")
    _DEFAULTS.update({a.dest: a.default for a in g._actions if a.dest != "help"})


def _read(args: argparse.Namespace, t0: float) -> dict:
    """``--read FILE``: the file's prompt and node counts, after refusing every flag that would be ignored."""
    from interp.circuits.graph_json import read_graph_json

    refuse_unused(args, _DEFAULTS, _READ_USES, "--read summarises a written graph file")
    doc = read_graph_json(args.read)
    kinds: dict[str, int] = {}
    for n in doc["nodes"]:
        kinds[n["feature_type"]] = kinds.get(n["feature_type"], 0) + 1
    return {"file": args.read, "prompt": doc["metadata"]["prompt"], "nodes": len(doc["nodes"]),
            "links": len(doc["links"]), "node_kinds": kinds, "seconds": time.perf_counter() - t0}


def cmd_graph(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    if args.read:
        return _read(args, t0)
    if args.prompt is None or not args.transcoders:
        raise InterpError("graph needs --prompt P and --transcoders DIR (or --read FILE)")
    if not args.prompt.strip():
        raise InterpError("--prompt is empty: give the text whose next token to explain")
    changes = list(args.ablate) + list(args.steer)  # layers, features and positions checked by the preflight
    if args.out:
        from interp.cache import check_writable

        check_writable(args.out, "--out", directory=False)
    from interp.circuits.graph import attribution_graph
    from interp.circuits.graph_memory import check_graph_size, machine_limit, model_bytes
    from interp.circuits.graph_intervention import active_changes, intervene
    from interp.circuits.graph_trust import flag_intervention
    from interp.models import model_shape, prompt_token_ids
    from saes.transcoder import load_set

    tset = load_set(args.transcoders)
    if not tset.transcoders:
        raise InterpError(f"{args.transcoders} is a set of SAEs; a graph needs transcoders (sae train --transcoder)")
    ids, shape = prompt_token_ids(args.model, args.prompt), model_shape(args.model)
    if ids is not None and shape is not None:  # the prompt's size, before the model loads
        from interp.distributed import local_device

        check_graph_size(len(ids), shape.n_layers, shape.d_model, shape.d_vocab, shape.n_heads, tset,
                         args.max_feature_nodes, args.batch,
                         machine_limit(str(local_device(args.device)), model_bytes(shape)))
    store = None
    if args.store:
        from saes.features.store import FeatureStore

        store = FeatureStore(args.store)
    model = model_of(args)
    tset.check_model(model, args.force)
    tset.to(model.cfg.device)
    check = (lambda acts: active_changes(tset, acts, changes)) if changes else None  # before the attribution
    graph = attribution_graph(model, tset, args.prompt, args.max_logits, args.logit_prob, args.max_feature_nodes,
                              args.batch, args.target, before_edges=check,
                              first_position_errors=args.first_position_errors)
    if store is not None:
        shown = graph.prune(args.node_threshold, args.edge_threshold).node_mask[:graph.n_features]
        graph.labels = store.set_labels(tset, graph.features.tolist(), graph.labels, shown.nonzero()[:, 0].tolist())
    iv = intervene(model, tset, graph, [tuple(c) for c in changes]) if changes else None
    why = flag_intervention(graph, iv) if iv is not None else None  # marks the nodes before the summary
    out = {"model": model.cfg.model_name, "transcoders": args.transcoders,
           **graph.summary(args.node_threshold, args.edge_threshold),
           "axes": {"logits": ["rank"], "top_paths": ["rank"]}}
    if iv is not None:
        out["intervention"] = {**iv.to_dict(), "disagreement": why}
    if args.out:
        from interp.cache import atomic_path
        from interp.circuits.graph_json import add_to_index

        doc = graph.to_json(args.node_threshold, args.edge_threshold, slug=Path(args.out).stem)
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(doc))
        out["out"] = args.out
        out["index"] = str(add_to_index(args.out, doc))  # circuit-tracer's frontend lists the folder's graphs
    if args.html:
        from interp.cache import atomic_path

        with atomic_path(args.html) as tmp:
            graph.figure(args.node_threshold, args.edge_threshold).write_html(tmp, include_plotlyjs=True)
        out["html"] = args.html
    out["seconds"] = time.perf_counter() - t0
    return out


COMMANDS = {"graph": cmd_graph}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    if "file" in out:
        print(f"{out['file']}: {out['nodes']} nodes, {out['links']} links ({out['node_kinds']}); prompt {out['prompt']!r}")
        return
    s, sp = out["scores"], out["scores_pruned"]
    print(f"{out['prompt']!r}: {out['active_features']:,} active features, {out['feature_nodes']:,} feature nodes; "
          f"{out['nodes']:,} nodes / {out['edges']:,} edges, pruned to {out['nodes_pruned']:,} / {out['edges_pruned']:,}")
    print(f"  replacement {s['replacement']:.3f} (pruned {sp['replacement']:.3f})   completeness "
          f"{s['completeness']:.3f} (pruned {sp['completeness']:.3f})   exactness error {out['exactness_max_error']:.1e}")
    print("  logits: " + ", ".join(f"{lg['token']!r} {lg['probability']:.3f}" for lg in out["logits"][:5]))
    for effect in ("promotes", "suppresses"):  # the edge weights written on the arrows, signed
        for p in (p for p in out["top_paths"] if p["effect"] == effect):
            chain = p["nodes"][0] + "".join(f" →({w:+.3f}) {n}" for w, n in zip(p["weights"], p["nodes"][1:]))
            print(f"  path {effect} {out['logits'][0]['token']!r}: {chain}")
    iv = out.get("intervention")
    if iv:
        print("  intervention: " + ", ".join(f"{f['layer']}:{f['feature']}@{f['position']}={f['value']:g}"
                                            for f in iv["features"]))
        for t, b, fz, pr, r in zip(iv["tokens"], iv["before"], iv["frozen_after"], iv["predicted_after"],
                                   iv["real_after"]):
            print(f"    {t!r:>12}  before {b:+.3f}  frozen {fz:+.3f}  predicted {pr:+.3f}  real {r:+.3f}")
        if iv["disagreement"]:
            print(f"  not to be trusted here: {iv['disagreement']}")
    _untrusted(out["untrusted"])
    for k in ("out", "index", "html"):
        if k in out:
            print(f"  {k}: {out[k]}")


def _untrusted(u: dict) -> None:
    """The summary's caution lines: massive-activation positions, and how many kept nodes they mark."""
    for p in u["massive_activation_positions"]:
        layers = p["layers"]
        span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}"
        print(f"  caution: {p['token']!r}@{p['position']} carries a massive activation after {span} (up to "
              f"{p['max_norm_ratio']:.0f}x the prompt's median norm); frozen norms may overstate its nodes")
    if u["nodes_pruned"]:
        print(f"  {u['nodes_pruned']} node{'s' if u['nodes_pruned'] != 1 else ''} of the pruned graph marked "
              "'untrusted' in the JSON and the figure")
