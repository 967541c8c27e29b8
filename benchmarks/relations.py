"""Relations: the batched Jacobian against a loop of backward passes, one LRE's time, and the
LRE table over every shipped relation; with ``--recall``, resample ablation and the relation
circuit of one relation.

Peer for the Jacobian: ``torch.autograd.functional.jacobian`` (its default loop: one backward
pass per row of ∂o/∂s) on a function that runs the whole prompt with s set at the subject's
last token; both sides interleaved, ``--repeats`` times; prints the median ratio, its spread,
and the largest difference between the two Jacobians.

    python -m benchmarks.relations [--relation country_capital --layer 12 --repeats 2]
    python -m benchmarks.relations --table --layers 0,3,...   # faithfulness/causality of every relation
    python -m benchmarks.relations --recall country_capital   # resample ablation and its circuit
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import chromium_path, emit, interleaved, machine, ratio


def _loop_jacobian(model, prompt: str, subject: str, layer: int) -> torch.Tensor:
    """The reference: ∂o/∂s by one backward pass per output row, over a full forward each."""
    from interp.knowledge.relations import subject_span
    from interp.tokens import to_tokens

    tokens = to_tokens(model, prompt)
    pos = subject_span(model, prompt, subject)[1] - 1
    n = model.cfg.n_layers
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda x: x == f"blocks.{layer}.hook_resid_post")
    s0 = cache[f"blocks.{layer}.hook_resid_post"][0, pos].detach()

    def f(s):
        got = {}

        def put(x, hook):
            x = x.clone()
            x[0, pos] = s
            return x

        def grab(x, hook):
            got["o"] = x[0, -1]
            return x

        model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", put),
                                                (f"blocks.{n - 1}.hook_resid_post", grab)])
        return got["o"]

    return torch.autograd.functional.jacobian(f, s0)


def _save(fig, folder: str, stem: str, width: int, height: int) -> None:
    """The figure as self-contained HTML, and as PNG when a headless Chromium is installed."""
    import subprocess
    from pathlib import Path

    html = Path(folder) / f"{stem}.html"
    fig.update_layout(width=width, height=height)
    fig.write_html(html, include_plotlyjs=True, config={"displayModeBar": False})
    browser = chromium_path()
    if browser:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={Path(folder).resolve() / f'{stem}.png'}", f"--window-size={width},{height}",
                        html.resolve().as_uri()], check=False, capture_output=True, timeout=120)
        html.unlink()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--relation", default="country_capital")
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sweep", action="store_true", help="also time the full layer sweep of --relation")
    ap.add_argument("--table", action="store_true", help="the LRE sweep of every shipped relation over --layers")
    ap.add_argument("--layers", help="comma-separated layers for --table (default: every layer)")
    ap.add_argument("--relations", help="comma-separated relations for --table (default: all shipped)")
    ap.add_argument("--recall", help="resample ablation and the circuit of this relation")
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--sizes", default="50,100,200,500,1000,2000,5000,10000")
    ap.add_argument("--figures", help="write the figures (PNG) into this folder")
    args = ap.parse_args(argv)

    from interp.knowledge import fact_recall as F
    from interp.knowledge import relations as R
    from interp.models import load_model

    model = load_model(args.model)
    out: dict = {"benchmark": "relations", "machine": machine(), "model": args.model}
    rel = R.load_relation(args.relation)
    train, _ = R.split_samples(rel)
    rank = min(args.rank, model.cfg.d_model)
    if args.table:
        names = args.relations.split(",") if args.relations else [r["name"] for r in R.list_relations()]
        layers = [int(x) for x in args.layers.split(",")] if args.layers else None
        sweeps = []
        for name in names:
            sw = R.lre_sweep(model, R.load_relation(name), layers, args.n, rank)
            sweeps.append(sw)
            b = sw.layers.index(sw.best_layer)
            out.setdefault("table", {})[name] = {
                "kind": sw.kind, "n_train": sw.n_train, "n_test": sw.n_test, "best_layer": sw.best_layer,
                "faithfulness": sw.faithfulness[b], "causality": sw.causality[b], "beta": sw.beta[b],
                "max_faithfulness": max(sw.faithfulness), "max_causality": max(sw.causality),
                "by_layer": {"layers": sw.layers, "faithfulness": sw.faithfulness, "causality": sw.causality},
                "sweep_seconds": sw.seconds}
        out["rank"], out["n"] = rank, args.n
        if args.figures:
            from interp.figures import lre_figure

            _save(lre_figure(sweeps), args.figures, "relations_lre", 1100, 480)
    elif args.recall:
        from interp.figures import relation_circuit_figure, resample_figure

        recall = R.load_relation(args.recall)
        res = F.resample_sweep(model, recall, max_pairs=args.max_pairs)
        circuit = F.relation_circuit(model, recall, [int(x) for x in args.sizes.split(",")])
        peaks = {}
        for site, grid in res.effects.items():
            for role, row in zip(res.roles, grid.tolist()):
                vals = [(v, l) for l, v in enumerate(row) if v == v]
                if vals:
                    peaks.setdefault(site, {})[role] = {"peak": max(vals)[0], "layer": max(vals)[1]}
        out["resample"] = {"relation": recall.name, "n_pairs": res.n_pairs, "clean": res.clean_baseline,
                           "resampled": res.corrupt_baseline, "peaks": peaks, "seconds": res.seconds}
        out["circuit"] = {"sizes": circuit.sizes, "accuracy": circuit.accuracy, "faithfulness": circuit.faithfulness,
                          "model_accuracy": circuit.model_accuracy, "ablated_accuracy": circuit.ablated_accuracy,
                          "n_edges_total": circuit.n_edges_total, "n_train": circuit.n_train,
                          "n_test": circuit.n_test, "top_edges": circuit.top_edges[:8], "seconds": circuit.seconds}
        if args.figures:
            _save(resample_figure(res), args.figures, "relations_resample", 1200, 420)
            _save(relation_circuit_figure(circuit), args.figures, "relations_circuit", 900, 420)
    else:
        sample = train[0]
        last = {}

        def ours():
            last["ours"] = R.jacobian(model, sample.prompt, sample.subject, args.layer)[0]

        def loop():
            last["loop"] = _loop_jacobian(model, sample.prompt, sample.subject, args.layer).float().cpu()

        t = interleaved({"batched": ours, "backward_loop": loop}, repeats=args.repeats, warmup=0)
        r = ratio(t, "backward_loop", "batched")
        diff = (last["ours"] - last["loop"]).abs().max().item()
        out["jacobian"] = {**t, "speedup": r["median"], "spread": r["spread"], "max_abs_diff": diff,
                           "relative_diff": diff / last["loop"].abs().max().item(), "layer": args.layer,
                           "prompt": sample.prompt}
        fits = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            R.fit_lre(model, rel, args.layer, args.n, examples=train[:args.n])
            fits.append(time.perf_counter() - t0)
        out["one_lre"] = {"relation": rel.name, "layer": args.layer, "n": args.n, "seconds": fits,
                          "median_s": sorted(fits)[len(fits) // 2]}
        if args.sweep:
            sw = R.lre_sweep(model, rel, list(range(model.cfg.n_layers)), args.n, rank)
            out["sweep"] = {"relation": rel.name, "layers": len(sw.layers), "seconds": sw.seconds,
                            "seconds_per_lre": sw.seconds_per_lre, "best_layer": sw.best_layer}
    emit(out)


if __name__ == "__main__":
    main()
