"""SAE quality on the embedded model: the main CPU run, and the L0/FVU trade-off of the four architectures.

Main run: ``blocks.15.hook_resid_post``, TopK k = 32, d_sae = 16·d_in (9216 on SmolLM2-135M),
``--tokens`` (2M by default) of the default corpus. It is evaluated with
:func:`saes.evaluate.evaluate_sae` on held-out corpus rows: L0, FVU, CE loss recovered with
the SAE spliced into the forward pass, KL, dead and dense fractions.

Trade-off: every architecture at three sparsity settings (k for TopK and BatchTopK, λ for
ReLU, the initial L0 for JumpReLU), ``--sweep-tokens`` each, on the same cached activations,
scored on a held-out activation block that no run trained on (L0 and FVU of the saved SAE,
i.e. BatchTopK in its JumpReLU inference form).

Every run shares one activation cache (``--cache``), so the model runs once per block.
Prints JSON; ``--html`` writes the L0/FVU figure.

    python -m benchmarks.sae_quality [--tokens 2000000 --sweep-tokens 500000 --cache DIR --out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from benchmarks._harness import emit, machine

SWEEP = {  # architecture -> (the knob, its three settings)
    "topk": ("k", [16, 32, 64]),
    "batchtopk": ("k", [16, 32, 64]),
    "relu": ("l1_coefficient", [1.0, 3.0, 10.0]),
    "jumprelu": ("init_l0", [16.0, 32.0, 64.0]),
}


def _train_and_load(model, cfg, out: Path):
    from saes.io import load_sae
    from saes.train import train

    res = train(model, cfg, out)
    return res, load_sae(out)


def _held_out(metrics: dict) -> dict:
    """The metrics, with their token count renamed so it cannot be taken for the training tokens."""
    return {("held_out_tokens" if k == "tokens" else k): v for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--tokens", type=int, default=2_000_000, help="tokens of the main TopK run")
    ap.add_argument("--sweep-tokens", type=int, default=500_000, help="tokens of each trade-off run (0: skip)")
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--eval-tokens", type=int, default=32_768)
    ap.add_argument("--cache", default="benchmarks/.sae-activations", help="activation shards, shared by all runs")
    ap.add_argument("--out", default="benchmarks/.sae-runs", help="where the trained SAEs go")
    ap.add_argument("--only", help="comma-separated architectures of the sweep")
    ap.add_argument("--skip-main", action="store_true", help="reuse the main SAE already in --out (no training or eval)")
    ap.add_argument("--html", help="write the L0/FVU figure here")
    args = ap.parse_args(argv)

    from interp.models import load_model
    from saes.activations import ActivationStore
    from saes.evaluate import evaluate_sae, reconstruction_metrics
    from saes.train import TrainConfig

    model = load_model(args.model)
    hook = f"blocks.{args.layer}.hook_resid_post"
    out = Path(args.out)
    t0 = time.perf_counter()
    base = dict(hook=hook, d_sae=16 * model.cfg.d_model, lr=args.lr, batch_size=args.batch,
                activation_cache=args.cache)
    result: dict = {"benchmark": "sae_quality", "machine": machine(), "model": args.model, "hook": hook,
                    "d_sae": base["d_sae"], "lr": args.lr}

    main_cfg = TrainConfig(architecture="topk", k=32, tokens=args.tokens, **base)
    if args.skip_main:  # an earlier run's main SAE, for the trade-off's reference point only
        from saes.io import load_sae

        sae, main_tokens = load_sae(out / "main-topk32"), main_cfg.steps * main_cfg.batch_size
        result["main"] = {"reused": str(out / "main-topk32")}
    else:
        res, sae = _train_and_load(model, main_cfg, out / "main-topk32")
        main_tokens = res.tokens
        ev = evaluate_sae(model, sae, None, args.eval_tokens)
        result["main"] = {"architecture": "topk", "k": 32, "tokens": res.tokens, "steps": res.steps,
                          "train_seconds": res.seconds, "train_tok_s": res.tokens / max(res.seconds, 1e-9),
                          "final_train_batch": res.final, "eval": ev.to_dict()}
        print(json.dumps({"main": result["main"]["eval"]}), file=sys.stderr, flush=True)  # progress; stdout keeps one object

    if args.sweep_tokens:
        # A held-out block past every run's training data (the store's batches are pure functions of the index).
        store = ActivationStore(model, [hook], None, main_cfg.batch_size, main_cfg.seq_len, main_cfg.resolved_block_rows(),
                                seed=main_cfg.seed, cache_dir=args.cache)
        longest = max(args.tokens, args.sweep_tokens)
        held_block = math.ceil(longest // main_cfg.batch_size / store.batches_per_block)
        held = store.block(held_block)[hook]
        result["held_out"] = {"block": held_block, "tokens": len(held)}
        points = [{**_held_out(reconstruction_metrics(sae, held)), "architecture": "topk", "knob": "k", "value": 32,
                   "tokens": main_tokens, "main": True}]
        archs = args.only.split(",") if args.only else list(SWEEP)
        for arch in archs:
            knob, values = SWEEP[arch]
            for v in values:
                cfg = TrainConfig(architecture=arch, tokens=args.sweep_tokens, **{knob: v}, **base)
                r, s = _train_and_load(model, cfg, out / f"sweep-{arch}-{knob}{v:g}")
                points.append({**_held_out(reconstruction_metrics(s, held)), "architecture": arch, "knob": knob,
                               "value": v, "tokens": r.tokens, "train_seconds": r.seconds})
                print(json.dumps(points[-1]), file=sys.stderr, flush=True)  # progress; stdout keeps one object
        result["tradeoff"] = points
        if args.html:
            from interp.figures import sae_tradeoff_figure

            sae_tradeoff_figure(points).write_html(args.html, include_plotlyjs=True)  # offline: no CDN
            result["html"] = args.html
    result["seconds"] = time.perf_counter() - t0
    emit(result)


if __name__ == "__main__":
    main()
