"""The relation verbs: ``interp relation`` (LREs), ``interp patch --resample`` and
``interp circuit --relation`` (fact recall over a whole relation)."""

from __future__ import annotations

import argparse
import time

from interp.cli._parser import count, index
from interp.errors import InterpError

__all__ = ["add_relation_parser", "cmd_relation", "relation_circuit_out", "resample_out", "relation_summary"]

DEFAULT_RANK = 64


def add_relation_parser(add) -> None:
    s = add("relation", "linear relational embeddings (Hernandez et al. 2024): faithfulness and causality by layer")
    s.add_argument("--dataset", help="a shipped relation (see --list) or a relation JSON file")
    s.add_argument("--list", action="store_true", help="list the shipped relations")
    s.add_argument("--layer", type=index, help="one layer ℓ of s (default: sweep --layers)")
    s.add_argument("--layers", help="comma-separated layers to sweep (default: every layer)")
    s.add_argument("--n", type=count, default=8, help="examples whose mean Jacobian is W")
    s.add_argument("--rank", type=count, default=DEFAULT_RANK,
                   help=f"rank of W's pseudo-inverse in the causal edit (default {DEFAULT_RANK}, at most d_model)")
    s.add_argument("--ns", help="also sweep n at the best layer, e.g. 1,2,4,8")
    s.add_argument("--ranks", help="also sweep the rank at the best layer, e.g. 16,32,64,128,256")
    s.add_argument("--seed", type=index, default=0, help="seed of the train/held-out split")
    s.add_argument("--html", help="write faithfulness and causality against layer here")


def _ints(text: str | None, what: str) -> list[int]:
    if not text:
        return []
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InterpError(f"{what} {text!r}: give comma-separated integers, e.g. 4,8") from None
    if any(v < 0 for v in values):
        raise InterpError(f"{what} {text!r}: values must be 0 or more")
    return values


def cmd_relation(args: argparse.Namespace, model_of, with_html) -> dict:
    from interp.knowledge import relations as R

    t0 = time.perf_counter()
    if args.list:
        return {"relations": R.list_relations(), "seconds": time.perf_counter() - t0}
    if not args.dataset:
        raise InterpError("relation needs --dataset NAME|FILE (or --list for the shipped relations)")
    relation = R.load_relation(args.dataset)
    layers = [args.layer] if args.layer is not None else (_ints(args.layers, "--layers") or None)
    ns, ranks = _ints(args.ns, "--ns"), _ints(args.ranks, "--ranks")
    model = model_of(args)
    for r in [args.rank, *ranks]:
        R.check_rank(r, model.cfg.d_model)
    sweep = R.lre_sweep(model, relation, layers, args.n, args.rank, ns, ranks, args.seed)
    out = {"model": model.cfg.model_name, "relation": sweep.relation, "kind": sweep.kind,
           "template": relation.template, "n": sweep.n, "rank": sweep.rank, "n_train": sweep.n_train,
           "n_test": sweep.n_test, "layers": sweep.layers,
           "axes": {"faithfulness": ["layer"], "causality": ["layer"], "beta": ["layer"],
                    "seconds_per_lre": ["layer"]},
           "faithfulness": sweep.faithfulness, "causality": sweep.causality, "beta": sweep.beta,
           "best_layer": sweep.best_layer, "seconds_per_lre": [round(x, 3) for x in sweep.seconds_per_lre],
           "n_sweep": {str(k): {"faithfulness": f, "causality": c} for k, (f, c) in sweep.n_sweep.items()},
           "rank_sweep": {str(k): v for k, v in sweep.rank_sweep.items()}, "seconds": sweep.seconds}
    return with_html(out, args, "lre_figure", [sweep])


def resample_out(args: argparse.Namespace, model_of, with_html) -> dict:
    """``interp patch --resample NAME|FILE``: resample ablation averaged over a relation."""
    from interp.circuits.patching import get_site
    from interp.knowledge import fact_recall as F
    from interp.knowledge import relations as R

    sites = [args.site] if args.site else list(F.RESAMPLE_SITES)
    for site in sites:
        if get_site(site).axes != ("layer", "pos"):
            raise InterpError(f"--resample sweeps (layer, position) sites: resid_pre, attn_out or mlp_out, "
                              f"not {site}")
    if args.method != "exact":
        raise InterpError("--resample runs exact patching only (leave out --method attribution)")
    relation = R.load_relation(args.resample)
    model = model_of(args)
    res = F.resample_sweep(model, relation, sites, args.seed, args.max_pairs)
    out = {"model": model.cfg.model_name, "relation": res.relation, "direction": "noise (resample)",
           "metric": "logit_diff", "sites": sites, "roles": list(res.roles), "n_pairs": res.n_pairs,
           "n_groups": res.n_groups, "clean_baseline": res.clean_baseline,
           "corrupt_baseline": res.corrupt_baseline,
           "axes": {f"effects.{s}": ["role", "layer"] for s in sites},
           "effects": {s: _nan_none(v.tolist()) for s, v in res.effects.items()}, "seconds": res.seconds}
    return with_html(out, args, "resample_figure", res)


def relation_circuit_out(args: argparse.Namespace, model_of, with_html) -> dict:
    """``interp circuit --relation NAME|FILE``: EAP over the relation, held-out accuracy by size."""
    from interp.knowledge import fact_recall as F
    from interp.knowledge import relations as R

    sizes = _ints(args.sizes, "--sizes") or [50, 100, 200, 500, 1000, 2000, 5000]
    relation = R.load_relation(args.relation)
    model = model_of(args)
    res = F.relation_circuit(model, relation, sizes, args.seed)
    out = {"model": model.cfg.model_name, "relation": res.relation, "metric": "logit_diff",
           "axes": {"accuracy": ["size"], "faithfulness": ["size"]}, "sizes": res.sizes,
           "accuracy": res.accuracy, "faithfulness": _nan_none(res.faithfulness),
           "model_accuracy": res.model_accuracy, "ablated_accuracy": res.ablated_accuracy,
           "n_edges_total": res.n_edges_total, "n_train": res.n_train, "n_test": res.n_test,
           "top_edges": res.top_edges, "seconds": res.seconds}
    return with_html(out, args, "relation_circuit_figure", res)


def _nan_none(x):
    if isinstance(x, list):
        return [_nan_none(v) for v in x]
    if isinstance(x, float):
        return round(x, 5) if x == x else None
    return x


def relation_summary(verb_name: str, out: dict) -> None:
    if verb_name == "relation" and "relations" in out:
        for r in out["relations"]:
            print(f"{r['name']:<22} {r['kind']:<12} {r['n_subjects']:>3} subjects  {r['template']!r}")
    elif verb_name == "relation":
        print(f"{out['relation']} ({out['kind']}): LRE from n={out['n']} examples, {out['n_test']} held-out subjects, "
              f"causality at rank {out['rank']}")
        print(f"  {'layer':>5} {'faithful':>9} {'causal':>7} {'beta':>5} {'s/LRE':>6}")
        for i, layer in enumerate(out["layers"]):
            mark = " *" if layer == out["best_layer"] else ""
            print(f"  {layer:>5} {out['faithfulness'][i]:>9.3f} {out['causality'][i]:>7.3f} {out['beta'][i]:>5.1f} "
                  f"{out['seconds_per_lre'][i]:>6.1f}{mark}")
        for k, v in out["n_sweep"].items():
            print(f"  n={k}: faithfulness {v['faithfulness']:.3f}, causality {v['causality']:.3f}")
        for k, v in out["rank_sweep"].items():
            print(f"  rank {k}: causality {v:.3f}")
    elif verb_name == "patch":  # --resample
        print(f"resample ablation over {out['relation']}: {out['n_pairs']} prompts, logit difference "
              f"{out['clean_baseline']:.2f} clean, {out['corrupt_baseline']:.2f} resampled; peak share lost:")
        for site, grid in out["effects"].items():
            for role, row in zip(out["roles"], grid):
                vals = [(v, l) for l, v in enumerate(row) if v is not None]
                if vals:
                    v, l = max(vals)
                    print(f"  {site:<9} {role:<24} {v:.3f} at L{l}")
    elif verb_name == "circuit":  # --relation
        print(f"circuit for {out['relation']}: held-out accuracy {out['model_accuracy']:.2f} whole model, "
              f"{out['ablated_accuracy']:.2f} with every edge resampled")
        for k, a, f in zip(out["sizes"], out["accuracy"], out["faithfulness"]):
            print(f"  {k:>6} edges: accuracy {a:.3f}, logit difference recovered "
                  f"{'-' if f is None else f'{f:.3f}'}")
