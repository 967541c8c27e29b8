"""``interp probe`` and ``interp steer``: linear probes per layer, and steering vectors."""

from __future__ import annotations

import argparse
import time

from interp.cli._common import AddParser, count, index, layer, layer_list, model_of, with_html
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]


def add_parsers(add: AddParser) -> None:
    s = add("probe", "linear probes per layer with a control task: accuracy, selectivity, best layer")
    s.add_argument("--dataset", action="append", required=True,
                   help="truth, sentiment, language, pos, all, or a JSON file (repeatable)")
    s.add_argument("--layers", type=layer_list, help="comma-separated layers or ranges, 0,5,10 or 0-3 (default: all)")
    s.add_argument("--site", default="resid_post", choices=["resid_post", "resid_pre", "resid_mid", "attn_out",
                                                            "mlp_out"])
    s.add_argument("--folds", type=count, default=5, help="cross-validation folds for the regularisation")
    s.add_argument("--test-size", type=float, default=0.25)
    s.add_argument("--seed", type=index, default=0)
    s.add_argument("--sae", help="SAELens-format SAE directory: report its features closest to each probe direction")
    s.add_argument("--force", action="store_true", help="use an --sae whose cfg.json names another model")
    s.add_argument("--html", help="write accuracy/selectivity against layer here")
    s = add("steer", "steering vector from a labelled dataset; generations and a classifier score against alpha")
    s.add_argument("--dataset", default="sentiment")
    s.add_argument("--positive", help="the label the vector points to (default: the last label)")
    s.add_argument("--layer", type=layer, help="residual layer to steer (default: n_layers // 3)")
    s.add_argument("--method", choices=["mean", "probe"], default="mean",
                   help="difference of class means, or the probe's weight vector")
    s.add_argument("--alphas", default="-8,-4,0,4,8")
    s.add_argument("--prompt", action="append", help="generation prompt (repeatable)")
    s.add_argument("--max-new-tokens", type=count, default=30)
    s.add_argument("--scorer-dataset", help="dataset of the scoring probe (default: --dataset)")
    s.add_argument("--scorer-layer", type=layer, help="layer of the scoring probe (default: --layer)")
    s.add_argument("--seed", type=index, default=0)
    s.add_argument("--html", help="write the steering curve here")


def cmd_probe(args) -> dict:
    from interp.representations.probes import SHIPPED, collect_activations, load_dataset, probe_layers

    names = list(SHIPPED) if args.dataset == ["all"] else args.dataset
    datasets = [load_dataset(n) for n in names]  # every file checked before any work
    model = model_of(args)
    layers = (args.layers.layers() or None) if args.layers else None  # checked against the model by the preflight
    t0 = time.perf_counter()
    results = {}
    sae = _probe_sae(args, model)
    for ds in datasets:
        acts = collect_activations(model, ds, layers, args.site)
        report = probe_layers(acts, args.folds, args.test_size, args.seed)
        results[ds.name] = report.to_dict()
        if sae is not None:
            results[ds.name]["sae_features"] = _sae_cosines(report, sae)
    out = {"model": model.cfg.model_name, "site": args.site, "layers": layers if layers else
           list(range(model.cfg.n_layers)), "axes": {"results.*.accuracy": ["layer"]}, "tokens": [],
           "results": results, "best_layer": {k: v["best_layer"] for k, v in results.items()},
           "seconds": time.perf_counter() - t0}
    return with_html(out, args, "probe_figure", list(results.values()))


def _probe_sae(args, model):
    if not args.sae:
        return None
    from saes.io import load_sae, resolve_hook

    sae = load_sae(args.sae)
    resolve_hook(model, sae, args.force)
    return sae


def _sae_cosines(report, sae) -> dict:
    """The SAE features closest to the probe direction at the SAE's own layer (if probed)."""
    from interp.representations.probes import feature_cosines

    parts = sae.cfg.hook_name.split(".")
    layer = int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None
    probe = next((p for p in report.layers if p.layer == layer), report.best)
    return {"layer": probe.layer, "hook": sae.cfg.hook_name,
            "top": {label: feature_cosines(probe.direction[i], sae.W_dec.detach().cpu())
                    for i, label in enumerate(report.labels if probe.direction.shape[0] > 1 else report.labels[1:])}}


def cmd_steer(args) -> dict:
    from interp.representations.probes import collect_activations, load_dataset
    from interp.representations.steering import mean_difference, probe_direction, probe_scorer, steering_curve

    ds = load_dataset(args.dataset)
    positive = args.positive or ds.labels[-1]
    if positive not in ds.labels:
        raise InterpError(f"--positive {positive!r} is not one of the dataset's labels {ds.labels}")
    try:
        alphas = [float(a) for a in args.alphas.split(",")]
    except ValueError as err:
        raise InterpError(f"--alphas takes comma-separated numbers, not {args.alphas!r}") from err
    model = model_of(args)
    layer = args.layer if args.layer is not None else model.cfg.n_layers // 3
    t0 = time.perf_counter()
    acts = collect_activations(model, ds, [layer])
    vector = (mean_difference if args.method == "mean" else probe_direction)(acts, layer, positive)
    scorer = probe_scorer(model, load_dataset(args.scorer_dataset or args.dataset), args.scorer_layer or layer,
                          positive)
    prompts = args.prompt or ["I went to see the movie and", "The food at the new place", "My week has been",
                              "The hotel room was", "Reading this book made me"]
    curve = steering_curve(model, vector, layer, alphas, prompts, scorer, args.max_new_tokens, args.seed)
    out = {"model": model.cfg.model_name, "dataset": ds.name, "positive": positive, "method": args.method,
           "layer": layer, "vector_norm": float(vector.norm()), "alphas": curve.alphas,
           "mean_score": curve.mean_score, "scores": curve.scores, "prompts": curve.prompts,
           "generations": curve.generations, "axes": {"scores": ["alpha", "prompt"],
                                                      "generations": ["alpha", "prompt"]},
           "tokens": [], "seconds": time.perf_counter() - t0}
    return with_html(out, args, "steering_figure", curve)



COMMANDS = {"probe": cmd_probe, "steer": cmd_steer}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The terminal form of a probe or steering result (without ``--json``)."""
    if verb_name == "probe":
        for name, r in out["results"].items():
            print(f"{name}: best layer {r['best_layer']}, accuracy {r['best_accuracy']:.3f} (chance {r['chance']:.2f})")
            print(f"  {'layer':>5} {'accuracy':>9} {'95% CI':>15} {'control':>8} {'selectivity':>11}")
            for i, layer in enumerate(r["layers"]):
                mark = " *" if layer == r["best_layer"] else ""
                print(f"  {layer:>5} {r['accuracy'][i]:>9.3f} {r['ci_low'][i]:>7.3f}-{r['ci_high'][i]:<7.3f} "
                      f"{r['control_accuracy'][i]:>8.3f} {r['selectivity'][i]:>11.3f}{mark}")
    elif verb_name == "steer":
        for a, m, g in zip(out["alphas"], out["mean_score"], out["generations"]):
            print(f"alpha {a:+6.1f}: P({out['positive']}) {m:.3f}  e.g. {g[0][:70]!r}")
