"""Causal tracing: the batched trace against a loop with ROME's structure.

Peer: :func:`interp.tracing.trace_loop`, one forward of ``samples + 1`` rows per
(token, layer) cell as in ROME's ``trace_important_states``, with the same noise.
Prints both times, the ratio, and the largest score difference.

    python -m benchmarks.tracing [--samples 10 --kinds hidden,mlp,attn]
"""

from __future__ import annotations

import argparse
import time

from benchmarks._harness import emit, machine, sync

PROMPT = "The Eiffel Tower is located in the city of"
SUBJECT = "The Eiffel Tower"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--kinds", default="hidden,mlp,attn")
    args = ap.parse_args(argv)

    from interp.models import load_model
    from interp.tracing import embedding_std, trace, trace_loop

    model = load_model(args.model)
    embedding_std(model)  # cached once per model; not part of either timing
    kinds = args.kinds.split(",")
    sync()
    t0 = time.perf_counter()
    fast = trace(model, PROMPT, SUBJECT, " Paris", kinds, args.samples)
    sync()
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = trace_loop(model, PROMPT, SUBJECT, " Paris", kinds, args.samples)
    sync()
    loop_s = time.perf_counter() - t0
    diff = max((fast.scores[k] - ref.scores[k]).abs().max().item() for k in kinds)
    n_tok, n_layers = fast.scores[kinds[0]].shape
    emit({"benchmark": "tracing", "machine": machine(), "model": args.model, "prompt": PROMPT,
          "subject": SUBJECT, "samples": args.samples, "kinds": kinds, "tokens": n_tok, "layers": n_layers,
          "loop_forwards": len(kinds) * n_tok * n_layers + 1,
          "batched_s": fast_s, "rome_loop_s": loop_s, "speedup": loop_s / fast_s,
          "max_abs_score_diff": diff, "clean_prob": fast.clean_prob, "corrupt_prob": fast.corrupt_prob})


if __name__ == "__main__":
    main()
