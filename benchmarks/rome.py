"""ROME: key statistics and edit time.

Key statistics: :func:`interp.knowledge.covariance.key_moment` (the forward stops after the
edited layer) against the structure of ROME's ``layer_stats``, which runs the whole
model over each batch and reads the layer's MLP input from a hook. Same corpus
rows, same batches; prints both times, the ratio, and the largest difference of C.
Then one edit with C cached, and the time of each part.

    python -m benchmarks.rome [--tokens 100000 --layer 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import emit, machine, sync

TEMPLATE = "{} is located in the city of"


def full_forward_moment(model, layer: int, tokens: int, seq_len: int = 256, batch_size: int = 8) -> torch.Tensor:
    """The peer: every batch through all layers, keys read by a hook, float64 sum."""
    from interp.corpus import token_rows
    from interp.knowledge.covariance import key_hook

    total = torch.zeros(model.cfg.d_mlp, model.cfg.d_mlp, dtype=torch.float64)
    rows = list(token_rows(model, None, tokens, seq_len))

    def add(k, *, hook):
        k = k.reshape(-1, k.shape[-1]).double()
        total.add_(k.T @ k)

    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            model.run_with_hooks(torch.stack(rows[i:i + batch_size]), fwd_hooks=[(key_hook(layer), add)])
    return total / (len(rows) * seq_len)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--layer", type=int, default=4)
    args = ap.parse_args(argv)

    from interp.knowledge.covariance import key_moment
    from interp.models import load_model
    from interp.knowledge.rome import RomeConfig, edit

    model = load_model(args.model)
    ours = key_moment(model, args.layer, tokens=args.tokens, refresh=True)
    sync()
    t0 = time.perf_counter()
    ref = full_forward_moment(model, args.layer, args.tokens)
    sync()
    ref_s = time.perf_counter() - t0
    diff = (ours.C.double().cpu() - ref).abs().max().item() / ref.abs().max().item()

    config = RomeConfig(cov_tokens=args.tokens)
    edit(model, TEMPLATE, "The Colosseum", " London", args.layer, config).undo()  # warm: prefixes cached
    t0 = time.perf_counter()
    e = edit(model, TEMPLATE, "The Eiffel Tower", " Rome", args.layer, config)
    edit_s = time.perf_counter() - t0
    e.undo()
    emit({"benchmark": "rome", "machine": machine(), "model": args.model, "layer": args.layer,
          "tokens": args.tokens,
          "covariance_s": round(ours.seconds, 2), "full_forward_covariance_s": round(ref_s, 2),
          "covariance_speedup": round(ref_s / ours.seconds, 2), "covariance_max_rel_diff": diff,
          "edit_s_with_cached_C": round(edit_s, 2), "edit_steps": e.stats["steps"],
          "edit_target_nll": e.stats["target_nll"]})


if __name__ == "__main__":
    main()
