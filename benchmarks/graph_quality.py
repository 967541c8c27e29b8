"""How far to trust the graphs of a transcoder set, on the embedded model (the attribution-graph issue's check 5).

For the Eiffel prompt and ten more known facts (``interp/data/known_facts.json``):

- the replacement and completeness scores, pruned (0.8 / 0.98) and unpruned;
- ablating each of the ``--top`` most influential feature nodes one at a time: the graph's predicted
  change of the top logit against the real model's (attention and norms free), and their Pearson r;
- where the influential features sit against the causal trace: the MLP trace's peak (token, layer),
  and the influence-weighted share of the top features at the last subject token, with their
  influence-weighted mean layer.

    python -m benchmarks.graph_quality --transcoders DIR [DIR ...] [--prompts 11 --top 20 --trace-samples 3
                                                                    --max-feature-nodes 4096]

Several sets (a per-layer set and a cross-layer transcoder trained on the same tokens, say) are scored on
the same prompts, one after another, and reported side by side under ``sets``, each with its prompts
and means; the first set's figures are also at the top level.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._harness import emit, machine


def main(argv: list[str] | None = None) -> None:
    from interp.knowledge.tracing import load_facts
    from interp.models import load_model
    from saes.transcoder import load_set

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--transcoders", required=True, nargs="+", help="one or more sets (per-layer or CLT folders)")
    ap.add_argument("--prompts", type=int, default=11)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--trace-samples", type=int, default=3)
    ap.add_argument("--max-feature-nodes", type=int, default=4096)
    args = ap.parse_args(argv)

    model = load_model(args.model)
    facts = load_facts()[:args.prompts]
    t0 = time.perf_counter()
    traces: dict = {}  # the causal trace of a prompt does not depend on the set: once per prompt
    sets = [_score(model, load_set(path), path, facts, args, traces) for path in args.transcoders]
    emit({"benchmark": "graph_quality", "model": args.model, "machine": machine(), **sets[0],
          "sets": sets,
          "seconds": time.perf_counter() - t0})


def _score(model, tset, path: str, facts: list[dict], args, traces: dict) -> dict:
    """One set's figures on ``facts`` (module docstring)."""
    from interp.circuits.graph import attribution_graph
    from interp.circuits.graph_intervention import intervene
    from interp.knowledge.tracing import fill_template, subject_span, trace

    rows, pred_all, real_all = [], [], []
    t0 = time.perf_counter()
    for fact in facts:
        prompt = fill_template(fact["template"], fact["subject"])
        g = attribution_graph(model, tset, prompt, max_feature_nodes=args.max_feature_nodes, label_features=False)
        pred, real = [], []
        for i in range(min(args.top, g.n_features)):
            layer, pos, feat = (int(v) for v in g.features[i])
            iv = intervene(model, tset, g, [(layer, feat, pos, 0.0)])
            pred.append(iv.predicted_after[0] - iv.before[0])
            real.append(iv.real_after[0] - iv.before[0])
        pred_all += pred
        real_all += real
        start, end = subject_span(model, prompt, fact["subject"])
        last_subject = end - 1
        if prompt not in traces:
            traces[prompt] = trace(model, prompt, fact["subject"], fact["answer"], kinds=("mlp",),
                                   samples=args.trace_samples)
        tr = traces[prompt]
        mlp = tr.scores["mlp"]
        peak_tok, peak_layer = divmod(int(mlp.argmax()), mlp.shape[1])
        infl = g.prune(0.8, 0.98).node_influence.numpy()[:g.n_features]
        top = np.argsort(-infl)[:args.top]
        w = infl[top] / max(infl[top].sum(), 1e-12)
        at_subject = float(w[g.features[top, 1] == last_subject].sum())
        rows.append({"prompt": prompt, "top_logit": g.logit_text[0], "top_prob": float(g.logit_probs[0]),
                     "active_features": g.active_features, "scores": g.scores().to_dict(),
                     "scores_pruned": g.scores(0.8, 0.98).to_dict(), "exactness_max_error": g.check_exact(),
                     "ablation_r": float(np.corrcoef(pred, real)[0, 1]) if len(pred) > 2 else None,
                     "trace_peak": {"token": peak_tok, "layer": peak_layer, "last_subject_token": last_subject},
                     "top_features_at_last_subject_token": at_subject,
                     "top_features_mean_layer": float((w * g.features[top, 0]).sum()),
                     "top_features_by_position": {str(p): float(w[g.features[top, 1] == p].sum())
                                                  for p in sorted(set(g.features[top, 1].tolist()))}})
    mean = lambda key, sub: float(np.mean([r[key][sub] for r in rows]))  # noqa: E731
    return {"transcoders": path, "kind": "clt" if hasattr(tset, "clt") else "per-layer",
            "max_feature_nodes": args.max_feature_nodes, "prompts": rows, "seconds": time.perf_counter() - t0,
          "mean": {"active_features": float(np.mean([r["active_features"] for r in rows])),
                   "replacement": mean("scores", "replacement"), "completeness": mean("scores", "completeness"),
                   "replacement_pruned": mean("scores_pruned", "replacement"),
                   "completeness_pruned": mean("scores_pruned", "completeness"),
                   "ablation_r_pooled": float(np.corrcoef(pred_all, real_all)[0, 1]),
                   "top_features_at_last_subject_token": float(np.mean([r["top_features_at_last_subject_token"]
                                                                        for r in rows])),
                   "trace_peak_at_last_subject_token": float(np.mean([r["trace_peak"]["token"] ==
                                                                      r["trace_peak"]["last_subject_token"]
                                                                      for r in rows]))}}

if __name__ == "__main__":
    main()
