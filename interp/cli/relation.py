"""``interp relation``: linear relational embeddings (LREs) of a relation, by layer. The same
relations drive ``interp patch --resample`` and ``interp circuit --relation`` (interp.cli.circuits)."""

from __future__ import annotations

import argparse
import time

from interp.cli._common import AddParser, count, index, ints, layer, layer_list, model_of, with_html
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]

DEFAULT_RANK = 64


def add_parsers(add: AddParser) -> None:
    s = add("relation", "linear relational embeddings (Hernandez et al. 2024): faithfulness and causality by layer")
    s.add_argument("--dataset", help="a shipped relation (see --list) or a relation JSON file")
    s.add_argument("--list", action="store_true", help="list the shipped relations")
    s.add_argument("--layer", type=layer, help="one layer ℓ of s (default: sweep --layers)")
    s.add_argument("--layers", type=layer_list, help="comma-separated layers to sweep, or 'all' (default: every third layer and the "
                                    "last, 0,3,...,27,29 on SmolLM2)")
    s.add_argument("--n", type=count, default=8, help="examples whose mean Jacobian is W")
    s.add_argument("--rank", type=count, default=DEFAULT_RANK,
                   help=f"rank of W's pseudo-inverse in the causal edit (default {DEFAULT_RANK}, at most d_model)")
    s.add_argument("--ns", help="also sweep n at the best layer, e.g. 1,2,4,8")
    s.add_argument("--ranks", help="also sweep the rank at the best layer, e.g. 16,32,64,128,256")
    s.add_argument("--seed", type=index, default=0, help="seed of the train/held-out split")
    s.add_argument("--html", help="write faithfulness and causality against layer here")


def cmd_relation(args: argparse.Namespace) -> dict:
    from interp.knowledge import relations as R

    t0 = time.perf_counter()
    if args.list:
        return {"relations": R.list_relations(), "seconds": time.perf_counter() - t0}
    if not args.dataset:
        raise InterpError("relation needs --dataset NAME|FILE (or --list for the shipped relations)")
    relation = R.load_relation(args.dataset)
    layers = [args.layer] if args.layer is not None else (
        "all" if args.layers == "all" else ((args.layers.layers() or None) if args.layers else None))
    ns, ranks = ints(args.ns, "--ns"), ints(args.ranks, "--ranks")
    model = model_of(args)
    for r in [args.rank, *ranks]:
        R.check_rank(r, model.cfg.d_model)
    if layers == "all":
        layers = list(range(model.cfg.n_layers))
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


COMMANDS = {"relation": cmd_relation}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The shipped relations (``--list``), or the LRE sweep by layer."""
    if "relations" in out:
        for r in out["relations"]:
            print(f"{r['name']:<22} {r['kind']:<12} {r['n_subjects']:>3} subjects  {r['template']!r}")
    else:
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
