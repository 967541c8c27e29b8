"""Attribution graphs beside circuit-tracer 0.5 (issue 42): the same transcoder set (circuit-tracer reads
our files with its own loader), the same tokens, the same cap on feature nodes, each side in a fresh
process, interleaved, ``--repeats`` times:

- the workbench (``attribution_graph``, batch 32);
- circuit-tracer at its defaults (``attribute``, batch 512), on the short and medium prompts
  (``--ct-default-on``: on the long one its batch copies need several times the 9.5 GB of the medium);
- circuit-tracer at each batch of ``--ct-batches``; its fastest is the one to beat.

For a short, a medium (≈40-token) and a long (≈128-token) prompt it reports the graph's seconds (the
call alone), the whole process's seconds (imports, loading, the graph) and the process's peak resident
memory, and the edges' agreement on the features both graphs hold (common edges, the largest difference
absolute and relative to its row's largest |edge|). Ratios are circuit-tracer's over ours.

    python -m benchmarks.graph_peer --transcoders SET [--repeats 2 --cap 4096 --prompts short,medium,long]

The set must be JumpReLU or ReLU (circuit-tracer 0.5 has no TopK loader); the first run makes
circuit-tracer's environment (benchmarks/setup_circuit_tracer.sh). Both sides use circuit-tracer's
conventions: a special token in front of the prompt and position 0's error nodes zeroed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace


from benchmarks._harness import emit, machine
from interp.host_memory import available_bytes
from benchmarks.circuit_tracer_compat import HERE, _compare, _model_dir, circuit_tracer_python, special_prefix
from benchmarks.graph import LONG, MEDIUM, PROMPT

PROMPTS = {"short": PROMPT, "medium": MEDIUM, "long": LONG}

_OURS = """
import json, resource, sys, time
T0 = time.perf_counter()
import torch
from safetensors.numpy import save_file
from interp.circuits.graph import attribution_graph
from interp.models import load_model
from saes.transcoder import load_set
model = load_model(sys.argv[1]); tset = load_set(sys.argv[2])
t0 = time.perf_counter()
g = attribution_graph(model, tset, sys.argv[3], max_feature_nodes=int(sys.argv[4]), batch=int(sys.argv[5]),
                      first_position_errors="zero", label_features=False, memory_limit=2**62)
seconds = time.perf_counter() - t0
save_file({"adjacency": g.adjacency, "features": g.features.astype("int64"), "acts": g.activations.astype("float32"),
           "logit_ids": __import__("numpy").array(g.logit_tokens, dtype="int64"),
           "tokens": __import__("numpy").array(g.tokens, dtype="int64")}, sys.argv[6])
print(json.dumps({"seconds": seconds, "process_seconds": time.perf_counter() - T0,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "active": g.active_features, "feature_nodes": g.n_features, "tokens": g.n_pos}))
"""


def _memory_cap() -> None:
    """Runs in each child before it starts: its address space limited to nine tenths of the memory free now,
    so that a side that cannot fit (circuit-tracer's batch 512 on a long prompt) fails with an allocation
    error instead of bringing the machine to the kernel's out-of-memory killer."""
    import resource

    free = available_bytes()
    if free:
        resource.setrlimit(resource.RLIMIT_AS, (int(0.9 * free), int(0.9 * free)))


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    if proc.returncode == 0 and proc.stdout.strip():
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][-400:]}


def _ours_as_graph(path: Path) -> SimpleNamespace:
    """Our saved graph with what :func:`benchmarks.circuit_tracer_compat._compare` reads."""
    from safetensors.numpy import load_file

    d = load_file(str(path))
    n = d["adjacency"].shape[0]
    return SimpleNamespace(features=d["features"], adjacency=d["adjacency"], n_features=len(d["features"]),
                           n_nodes=n, activations=d["acts"], logit_tokens=d["logit_ids"].tolist())


def _spread(runs: list[dict], key: str) -> list[float] | None:
    vals = [r[key] for r in runs if key in r]
    return [min(vals), max(vals)] if vals else None


def main(argv: list[str] | None = None) -> None:
    from interp.models import load_model
    from saes.transcoder import load_set, save_circuit_tracer

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--transcoders", required=True, help="a JumpReLU or ReLU transcoder set of the workbench's")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cap", type=int, default=4096, help="feature nodes, both sides (the workbench's default)")
    ap.add_argument("--batch", type=int, default=32, help="the workbench's batch (its default)")
    ap.add_argument("--ct-batches", default="32", help="circuit-tracer's batches besides its default 512 (its fastest "
                    "here: 32 took 110 s on the medium prompt, 128 took 120 s, 512 227 s)")
    ap.add_argument("--ct-default-on", default="short,medium", help="the prompts circuit-tracer's default batch (512) "
                    "runs on: 4.6 min and 9.5 GB on the medium prompt, and its batch copies grow with the length")
    ap.add_argument("--prompts", default="short,medium,long")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before one run is stopped")
    ap.add_argument("--python", default=None, help="circuit-tracer's environment (benchmarks/setup_circuit_tracer.sh)")
    args = ap.parse_args(argv)
    tset = load_set(args.transcoders)
    if next(iter(tset.layers.values())).cfg.architecture == "topk":
        raise SystemExit("interp: error: circuit-tracer 0.5's loader has no TopK; give a JumpReLU or ReLU set")
    python = circuit_tracer_python(args.python)
    model = load_model(args.model)
    prefix = special_prefix(model, PROMPT)
    sides = {"workbench": None, "circuit_tracer_default": 512,
             **{f"circuit_tracer_batch_{b}": int(b) for b in args.ct_batches.split(",") if b}}
    default_on = set(args.ct_default_on.split(","))
    prompts = {k: prefix + PROMPTS[k] for k in args.prompts.split(",")}
    runs = {p: {s: [] for s in sides} for p in prompts}
    agreement = {p: {} for p in prompts}
    with tempfile.TemporaryDirectory(prefix="graph-peer-") as tmp:
        tmp = Path(tmp)
        save_circuit_tracer(tset, tmp / "set")
        model_dir = _model_dir(model, args.model, tmp / "model")
        ids = {p: model.tokenizer(text, add_special_tokens=False)["input_ids"] for p, text in prompts.items()}
        for r in range(args.repeats):
            for p, text in prompts.items():
                for side, batch in sides.items():
                    if side == "circuit_tracer_default" and p not in default_on:
                        continue
                    out = tmp / f"{p}-{side}-{r}.safetensors"
                    if batch is None:
                        cmd = [sys.executable, "-c", _OURS, args.model, args.transcoders, text, str(args.cap),
                               str(args.batch), str(out)]
                    else:
                        cmd = [python, str(HERE / "_circuit_tracer_time.py"), str(tmp / "set" / "config.yaml"),
                               str(model_dir), json.dumps(ids[p]), str(batch), str(args.cap), str(out)]
                    try:
                        res = _last_json(subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                                                        timeout=args.timeout, preexec_fn=_memory_cap))
                    except subprocess.TimeoutExpired:
                        res = {"error": f"stopped after {args.timeout:.0f} s"}
                    print(json.dumps({"prompt": p, "side": side, "repeat": r, **res}), file=sys.stderr, flush=True)
                    runs[p][side].append(res)
                    if r == 0 and batch is not None and "error" not in res and (tmp / f"{p}-workbench-0.safetensors").exists():
                        from safetensors.numpy import load_file

                        agreement[p][side] = _compare(_ours_as_graph(tmp / f"{p}-workbench-0.safetensors"),
                                                      load_file(str(out)))
    report = {}
    for p in prompts:
        rs = runs[p]
        summary = {side: {"seconds": _spread(v, "seconds"), "process_seconds": _spread(v, "process_seconds"),
                          "peak_gb": _spread(v, "peak_gb")} for side, v in rs.items()}
        ours = [r for r in rs["workbench"] if "error" not in r]
        ct_sides = {s: [r for r in v if "error" not in r] for s, v in rs.items() if s != "workbench"}
        fastest = min((s for s in ct_sides if ct_sides[s]), key=lambda s: min(r["seconds"] for r in ct_sides[s]),
                      default=None)
        entry = {"tokens": len(ids[p]), "runs": rs, "summary": summary, "agreement": agreement[p]}
        if ours and fastest:
            theirs = ct_sides[fastest]
            entry["circuit_tracer_fastest"] = fastest
            entry["speedup_over_fastest"] = {
                "graph": [min(t["seconds"] for t in theirs) / max(o["seconds"] for o in ours),
                          max(t["seconds"] for t in theirs) / min(o["seconds"] for o in ours)],
                "process": [min(t["process_seconds"] for t in theirs) / max(o["process_seconds"] for o in ours),
                            max(t["process_seconds"] for t in theirs) / min(o["process_seconds"] for o in ours)]}
            entry["peak_memory_ratio_fastest"] = [min(t["peak_gb"] for t in theirs) / max(o["peak_gb"] for o in ours),
                                                  max(t["peak_gb"] for t in theirs) / min(o["peak_gb"] for o in ours)]
        report[p] = entry
    emit({"benchmark": "graph_peer", "machine": machine(), "model": args.model, "transcoders": args.transcoders,
          "cap": args.cap, "batch": args.batch, "repeats": args.repeats, "prompts": report,
          "note": "ratios are circuit-tracer's over the workbench's, as [worst, best] over the runs"})


if __name__ == "__main__":
    sys.exit(main())
