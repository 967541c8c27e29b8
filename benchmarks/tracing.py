"""Causal tracing: the batched trace against a loop with ROME's structure, kind by kind.

Peer: :func:`interp.knowledge.tracing.trace_loop`, one forward of ``samples + 1`` rows per
(token, layer) cell as in ROME's ``trace_important_states``, with the same noise.
Each kind (hidden, MLP, attention) is timed on its own, the two sides interleaved,
``--repeats`` times; prints the median ratio, its spread, and the largest score
difference.

    python -m benchmarks.tracing [--samples 10 --kinds hidden,mlp,attn --repeats 2]
"""

from __future__ import annotations

import argparse

from benchmarks._harness import emit, interleaved, machine, ratio

PROMPT = "The Eiffel Tower is located in the city of"
SUBJECT = "The Eiffel Tower"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--kinds", default="hidden,mlp,attn")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    from interp.models import load_model
    from interp.knowledge.tracing import embedding_std, trace, trace_loop

    model = load_model(args.model)
    embedding_std(model)  # cached once per model; not part of either timing
    kinds = args.kinds.split(",")
    per_kind, diffs, fast = {}, {}, None
    for kind in kinds:
        last = {}

        def run(side, fn, kind=kind):
            last[side] = fn(model, PROMPT, SUBJECT, " Paris", [kind], args.samples)

        t = interleaved({"batched": lambda: run("batched", trace), "rome_loop": lambda: run("rome_loop", trace_loop)},
                        repeats=args.repeats, warmup=0)
        fast = last["batched"]
        diffs[kind] = (fast.scores[kind] - last["rome_loop"].scores[kind]).abs().max().item()
        r = ratio(t, "rome_loop", "batched")
        per_kind[kind] = {**t, "speedup": r["median"], "spread": r["spread"], "max_abs_score_diff": diffs[kind]}
    n_tok, n_layers = fast.scores[kinds[-1]].shape
    emit({"benchmark": "tracing", "machine": machine(), "model": args.model, "prompt": PROMPT,
          "subject": SUBJECT, "samples": args.samples, "kinds": kinds, "tokens": n_tok, "layers": n_layers,
          "loop_forwards_per_kind": n_tok * n_layers + 1, "per_kind": per_kind,
          "speedups": {k: v["speedup"] for k, v in per_kind.items()},
          "max_abs_score_diff": max(diffs.values()), "clean_prob": fast.clean_prob,
          "corrupt_prob": fast.corrupt_prob})


if __name__ == "__main__":
    main()
