"""Attribution graphs: batched attribution against the naive loop, the embedded model's time, and memory.

- **Batched against naive.** The peer computes the same graph with one backward pass per target node
  (``batch=1``: each feature's and logit's row from its own pass), the loop an implementation
  without target batching runs; ours injects ``--batch`` targets per pass. Both run on the same
  prompt and the same cap of feature nodes, interleaved, at least twice; the adjacency matrices
  must be equal (the largest difference is reported).
- **Time** of a full graph (default ``--max-feature-nodes``) of a 10-token prompt on the embedded
  model with every layer's transcoder.
- **Memory:** the peak resident memory of a process that builds the graph of a 128-token prompt
  with the default cap (a fresh interpreter, so the peak is the graph's).

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

_PEAK = """
import json, os, resource, sys, threading, time
from interp.models import load_model
from interp.circuits.graph import attribution_graph
from interp.circuits.graph_memory import estimate_bytes
from saes.transcoder import load_set
model = load_model(sys.argv[1]); tset = load_set(sys.argv[2]); limit = float(sys.argv[4])
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
base = peak()
t0 = time.perf_counter()
def report(done, **extra):
    print(json.dumps({"seconds": time.perf_counter() - t0, "finished": done, "model_and_set_rss_gb": base,
                      "peak_rss_gb": peak(), **extra}), flush=True)
def watchdog():  # stop a run that takes too long, and report the peak so far
    time.sleep(limit)
    report(False)
    os._exit(0)
threading.Thread(target=watchdog, daemon=True).start()
g = attribution_graph(model, tset, sys.argv[3], label_features=False, memory_limit=2**62)  # measure, not refuse
graph_peak = peak()
summary = g.summary()  # what `interp graph` does next: prune, score, paths
report(True, graph_seconds=g.seconds, graph_peak_rss_gb=graph_peak, tokens=g.n_pos, active_features=g.active_features,
       feature_nodes=g.n_features, nodes=g.n_nodes, nodes_pruned=summary["nodes_pruned"])
"""


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
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-seconds", type=float, default=600,
                    help="stop the 128-token run after this long and report the peak so far")
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
        proc = subprocess.run([sys.executable, "-c", _PEAK, args.model, args.transcoders, LONG,
                               str(args.memory_seconds)], capture_output=True, text=True, timeout=7200)
        if proc.returncode:
            mem = {"error": proc.stderr.strip()[-400:]}
        else:
            mem = json.loads(proc.stdout.strip().splitlines()[-1])
        from interp.tokens import to_tokens

        n_tok = int(to_tokens(model, LONG).shape[1])
        k = max(getattr(t.cfg, "k", 32) for t in tset.layers.values())
        from interp.circuits.graph_memory import estimate_bytes

        mem.update(tokens=n_tok, estimate_gb=estimate_bytes(n_tok, model.cfg.n_layers, model.cfg.d_model,
                                                            model.cfg.d_vocab, k * len(tset.layers) / model.cfg.n_layers,
                                                            4096, 32, n_heads=model.cfg.n_heads) / 2**30)
        out["memory_long_prompt"] = mem
    emit(out)


if __name__ == "__main__":
    main()
