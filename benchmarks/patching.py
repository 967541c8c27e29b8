"""Exact patching sweeps and attribution patching against TransformerLens's `patching`.

Peer: ``transformer_lens.patching.get_act_patch_*`` (one forward per cell) on the same
model, prompts and metric, in the same run. Reports each sweep's seconds, the
speed-up ratio and the largest difference of values.

    python -m benchmarks.patching [--sites resid_pre,attn_out,mlp_out,head_out] [--skip-tl-heads]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import emit, machine, sync

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"

TL_FUNCTIONS = {
    "resid_pre": "get_act_patch_resid_pre",
    "attn_out": "get_act_patch_attn_out",
    "mlp_out": "get_act_patch_mlp_out",
    "head_out": "get_act_patch_attn_head_out_by_pos",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sites", default="resid_pre,attn_out,mlp_out,head_out")
    args = ap.parse_args(argv)

    from transformer_lens import patching as tl_patching

    from interp.circuits.attribution import attribution_sweep
    from interp.metrics import make_task
    from interp.models import load_model
    from interp.circuits.patching import patch_sweep

    model = load_model(args.model)
    task = make_task(model, CLEAN, CORRUPT, " Paris", " Rome")
    a, w = task.answer[0].item(), task.wrong[0].item()

    def tl_metric(logits):
        return logits[:, -1, a].mean() - logits[:, -1, w].mean()

    with torch.no_grad():
        _, clean_cache = model.run_with_cache(task.clean)
    rows, tl_resid_s = {}, None
    for site in args.sites.split(","):
        sync()
        t0 = time.perf_counter()
        ours = patch_sweep(model, task, site)
        sync()
        ours_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            theirs = getattr(tl_patching, TL_FUNCTIONS[site])(model, task.corrupt, clean_cache, tl_metric)
        sync()
        tl_s = time.perf_counter() - t0
        if site == "resid_pre":
            tl_resid_s = tl_s
        rows[site] = {"cells": ours.values.numel(), "ours_s": ours_s, "transformer_lens_s": tl_s,
                      "speedup": tl_s / ours_s,
                      "max_abs_diff": (ours.values - theirs.cpu()).abs().max().item()}
    # Attribution patching of every site: one clean forward, one corrupt forward + backward.
    sync()
    t0 = time.perf_counter()
    atp = attribution_sweep(model, task)
    sync()
    atp_s = time.perf_counter() - t0
    out = {"benchmark": "patching", "machine": machine(), "model": args.model,
           "prompts": {"clean": CLEAN, "corrupt": CORRUPT, "answer": " Paris", "wrong": " Rome",
                       "tokens": len(task.clean_tokens)},
           "exact": rows,
           "attribution_all_sites": {"sites": list(atp), "seconds": atp_s}}
    if tl_resid_s is not None:
        out["attribution_all_sites"]["speedup_vs_tl_resid_pre_sweep"] = tl_resid_s / atp_s
    emit(out)


if __name__ == "__main__":
    main()
