"""Attribution graphs: batched attribution against the naive loop, the embedded model's time, and memory.

- **Batched against naive.** The peer computes the same graph with one backward pass per target node
  (``batch=1``: each feature's and logit's row from its own pass), the loop an implementation
  without target batching runs; ours injects ``--batch`` targets per pass. Both run on the same
  prompt and the same cap of feature nodes, interleaved, at least twice; the adjacency matrices
  must be equal (the largest difference is reported).
- **Time** of a full graph (default ``--max-feature-nodes``) of a 10-token prompt on the embedded
  model with every layer's transcoder.
- **Estimate against measurement.** For a short (≤ 10 tokens), a medium and a long prompt, each in a
  fresh interpreter (so that its peak memory is its own), ``--repeats`` times, interleaved: what
  ``interp graph`` does (graph, summary, graph JSON, figure) timed against the run's own estimate
  (``estimated_seconds``), and the peak resident memory beyond the model and set (VmHWM, reset after
  loading them) against
  :func:`interp.circuits.graph_memory.estimate_bytes`. Ratios are estimate / measured.

    python -m benchmarks.graph --transcoders DIR [--repeats 2 --cap 4096]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from benchmarks._harness import emit, interleaved, machine, ratio

PROMPT = "The Eiffel Tower is in the city of"
LONG = ("The history of the city begins with a small settlement on the river, where traders met to exchange "
        "grain, salt and cloth. Over the centuries the town grew into a market, then a capital, and its "
        "bridges, churches and palaces still show each of those ages. Today the old quarter draws visitors "
        "from every country, while the new districts to the west hold offices, universities and the largest "
        "hospital in the region. The river remains the centre of life: boats carry goods and passengers, and "
        "in summer its banks fill with people who come to walk, to read and to watch the evening light while "
        "the bells of the old cathedral ring out across water")

MEDIUM = " ".join(LONG.split()[:34])

_RUN = """
import json, os, sys, threading, time
from interp.models import load_model
from interp.circuits.graph import attribution_graph
from interp.circuits.graph_memory import estimate_bytes
from saes.transcoder import load_set
model = load_model(sys.argv[1]); tset = load_set(sys.argv[2]); limit = float(sys.argv[4])
def rss(field):  # GB, from /proc/self/status: VmRSS now, VmHWM the peak since the last reset
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 2**20
with open("/proc/self/clear_refs", "w") as f:  # reset the peak: loading the model has a transient of its own
    f.write("5")
base = rss("VmRSS:")
peak = lambda: rss("VmHWM:")
t0 = time.perf_counter()
def watchdog():  # stop a run that takes too long
    time.sleep(limit)
    print(json.dumps({"error": f"stopped after {limit:.0f} s"}), flush=True)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
g = attribution_graph(model, tset, sys.argv[3], memory_limit=2**62)  # measure, not refuse
summary = g.summary()  # then what `interp graph` does: prune, score, paths, the JSON and the figure
json.dumps(g.to_json())
g.figure().to_html(include_plotlyjs=True)
seconds = time.perf_counter() - t0
k = max(getattr(t.cfg, "k", 32) for t in tset.layers.values())
need = estimate_bytes(g.n_pos, model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab,
                      k * len(tset.layers) / model.cfg.n_layers, 4096, 32, n_heads=model.cfg.n_heads)
print(json.dumps({"tokens": g.n_pos, "active_features": g.active_features, "nodes": g.n_nodes,
                  "seconds": seconds, "estimated_seconds": g.estimated_seconds,
                  "time_ratio": g.estimated_seconds / seconds, "peak_gb": (peak() - base),
                  "estimated_gb": need / 2**30, "memory_ratio": need / 2**30 / max(peak() - base, 1e-9)}), flush=True)
"""


def _estimates(model: str, transcoders: str, repeats: int, limit: float) -> dict:
    """Each prompt's runs (fresh interpreters, interleaved), and each ratio's range over all of them."""
    prompts = {"short": PROMPT, "medium": MEDIUM, "long": LONG}
    runs: dict[str, list[dict]] = {k: [] for k in prompts}
    for _ in range(repeats):
        for name, prompt in prompts.items():
            proc = subprocess.run([sys.executable, "-c", _RUN, model, transcoders, prompt, str(limit)],
                                  capture_output=True, text=True, timeout=limit + 600)
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 and
                              proc.stdout.strip() else {"error": proc.stderr.strip()[-400:]})
    out = {}
    for name, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        out[name] = {"runs": rs}
        if ok:
            out[name].update({"tokens": ok[0]["tokens"],
                              "time_ratio": [min(r["time_ratio"] for r in ok), max(r["time_ratio"] for r in ok)],
                              "memory_ratio": [min(r["memory_ratio"] for r in ok),
                                               max(r["memory_ratio"] for r in ok)]})
    return out


def _max_difference(a, b) -> float:
    """The largest difference between two graphs' edges, node for node: features whose influence ties to
    float precision may be ordered differently, so b's nodes are first put in a's order."""
    key = {tuple(f): i for i, f in enumerate(b.features.tolist())}
    if set(key) != {tuple(f) for f in a.features.tolist()}:
        return float("inf")
    perm = np.r_[[key[tuple(f)] for f in a.features.tolist()], np.arange(b.n_features, b.n_nodes)].astype(int)
    return float(np.abs(a.adjacency - b.adjacency[np.ix_(perm, perm)]).max())


def main(argv: list[str] | None = None) -> None:
    from interp.circuits.graph import attribution_graph
    from interp.models import load_model
    from saes.transcoder import load_set

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--transcoders", required=True)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cap", type=int, default=4096,
                    help="feature nodes in the batched-against-naive comparison (the graph's default: all of a "
                         "10-token prompt's)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-memory", action="store_true", help="skip the estimates against measurement")
    ap.add_argument("--memory-seconds", type=float, default=900, help="stop a run of the estimates after this long")
    args = ap.parse_args(argv)

    model = load_model(args.model)
    tset = load_set(args.transcoders)
    graphs = {}

    def run(batch):
        graphs[batch] = attribution_graph(model, tset, PROMPT, max_feature_nodes=args.cap, batch=batch,
                                          label_features=False)

    times = interleaved({"naive_one_backward_per_target": lambda: run(1),
                         "batched": lambda: run(args.batch)}, repeats=args.repeats, warmup=0)
    diff = _max_difference(graphs[1], graphs[args.batch])
    t0 = time.perf_counter()
    full = attribution_graph(model, tset, PROMPT, label_features=False)
    full_s = time.perf_counter() - t0
    out = {"benchmark": "graph", "model": args.model, "machine": machine(), "transcoders": args.transcoders,
           "prompt": PROMPT, "tokens": full.n_pos, "cap": args.cap, "batch": args.batch, "times": times,
           "ratios": {"batched_over_naive": ratio(times, "naive_one_backward_per_target", "batched")},
           "max_adjacency_difference": diff, "rows_compared": int(graphs[1].n_features + graphs[1].n_logits),
           "full_graph": {"seconds": full_s, "active_features": full.active_features,
                          "feature_nodes": full.n_features, "nodes": full.n_nodes,
                          "exactness_max_error": full.check_exact(), "scores": full.scores().to_dict(),
                          "scores_pruned": full.scores(0.8, 0.98).to_dict()}}
    if not args.no_memory:
        out["estimates"] = _estimates(args.model, args.transcoders, args.repeats, args.memory_seconds)
    emit(out)


if __name__ == "__main__":
    main()
