"""GCG against nanoGCG on the same transformers model, target, span length and search width.

Both sides wrap the prompt in the model's chat template with the span at its end, score the
mean NLL of the target, keep the best string found so far as the next base (a buffer of one;
nanoGCG's default ``buffer_size=0`` instead moves to each step's best even when it is worse),
and use the same search width, top-k and span; ``--our-steps`` lets the workbench run about
as long in wall time as the peer's ``--steps``. The two are interleaved, ``--repeats`` times each. nanoGCG 0.3.0's prefix cache
indexes the key/value cache as a list of tuples, which transformers' ``DynamicCache`` no longer
is (``TypeError: 'DynamicCache' object is not subscriptable``), so the peer runs without it. nanoGCG's per-step times
come from timestamping its candidate-loss call (one per step). Prints each side's loss
against wall time, and the time each took to reach the other's final loss.

    pip install --no-deps nanogcg    # the peer; not a dependency of the workbench
    python -m benchmarks.gcg [--steps 20 --search-width 64 --topk 64 --repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._harness import emit, machine


def _time_to(losses: list[float], times: list[float], level: float) -> float | None:
    return next((t for l, t in zip(losses, times) if l <= level + 1e-9), None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompt", default="Write a short note about the weather.")
    ap.add_argument("--target", default="Sure, here is")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--our-steps", type=int, default=None, help="the workbench's steps (default: --steps)")
    ap.add_argument("--search-width", type=int, default=64)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument("--init", default="x x x x x x x x x x")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-peer", action="store_true", help="only the workbench's side")
    args = ap.parse_args(argv)

    import torch

    from interp import gcg as G
    from interp.models import load_model

    model = load_model(args.model)
    hf, tok = model.original_model, model.tokenizer
    runs: dict[str, list[dict]] = {"workbench": [], "nanogcg": []}

    def ours(seed: int) -> dict:
        cfg = G.GCGConfig(steps=args.our_steps or args.steps, search_width=args.search_width, topk=args.topk, optim_init=args.init,
                          buffer_size=1, early_stop=False, batch_size=args.search_width, seed=seed)
        t0 = time.perf_counter()
        res = G.gcg(model, args.prompt + G.SLOT, G.target_objective(model, args.target), cfg, chat=True)
        return {"losses": res.losses, "times": res.times, "best": res.best_string, "seconds": time.perf_counter() - t0}

    def peer(seed: int) -> dict:
        import nanogcg
        from nanogcg import gcg as ng

        stamps: list[float] = []
        original = ng.GCG._compute_candidates_loss_original

        def stamped(self, *a, **k):
            out = original(self, *a, **k)
            stamps.append(time.perf_counter())
            return out

        ng.GCG._compute_candidates_loss_original = stamped
        try:
            cfg = nanogcg.GCGConfig(num_steps=args.steps, optim_str_init=args.init, search_width=args.search_width,
                                    topk=args.topk, buffer_size=1, seed=seed, verbosity="ERROR",
                                    use_prefix_cache=False)  # its cache indexing fails on this transformers
            t0 = time.perf_counter()
            res = nanogcg.run(hf, tok, args.prompt, args.target, cfg)
            total = time.perf_counter() - t0
        finally:
            ng.GCG._compute_candidates_loss_original = original
        best_so_far = [min(res.losses[:i + 1]) for i in range(len(res.losses))]
        step_times = [s - t0 for s in stamps[-len(res.losses):]] if len(stamps) >= len(res.losses) else \
            [total * (i + 1) / len(res.losses) for i in range(len(res.losses))]
        return {"losses": best_so_far, "times": step_times, "best": res.best_string, "seconds": total}

    torch.manual_seed(0)
    for r in range(args.repeats):
        runs["workbench"].append(ours(r))
        if not args.no_peer:
            runs["nanogcg"].append(peer(r))
    out: dict = {"benchmark": "gcg", "machine": machine(), "model": args.model, "prompt": args.prompt,
                 "target": args.target, "steps": args.steps, "search_width": args.search_width, "topk": args.topk,
                 "span_tokens": len(tok.encode(args.init, add_special_tokens=False)), "peer_prefix_cache": False,
                 "runs": runs}
    summary = {}
    for side, rs in runs.items():
        if rs:
            summary[side] = {"median_s": statistics.median(r["seconds"] for r in rs),
                             "s_per_step": statistics.median(r["seconds"] / len(r["losses"]) for r in rs),
                             "final_loss": [r["losses"][-1] for r in rs]}
    if runs["nanogcg"]:
        reach = []
        for a, b in zip(runs["workbench"], runs["nanogcg"]):
            reach.append({"workbench_to_nanogcg_final": _time_to(a["losses"], a["times"], b["losses"][-1]),
                          "nanogcg_to_workbench_final": _time_to(b["losses"], b["times"], a["losses"][-1])})
        summary["time_to_other_final_loss"] = reach
        summary["speed_ratio_per_step"] = summary["nanogcg"]["s_per_step"] / summary["workbench"]["s_per_step"]
    out["summary"] = summary
    emit(out)


if __name__ == "__main__":
    main()
