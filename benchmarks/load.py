"""Cached load time of the embedded model, and the bridge's hook overhead.

Peer: the bare ``transformers`` model from the same cached weights, on the same
tokens. ``hook_overhead`` = bare tokens/s ÷ bridge tokens/s (1.0 = free hooks).

    python -m benchmarks.load [--model smollm2-135m --batch 8 --seq 128 --repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import emit, interleaved, machine


def _bare_model(name: str):
    """The same weights as a plain ``transformers`` model, outside the bridge."""
    from transformers import AutoModelForCausalLM

    from interp.embedded import _embedded_dir
    from interp.models import BUILTIN, DEFAULT_MODEL, load_embedded_tokenizer

    if name == DEFAULT_MODEL:
        return AutoModelForCausalLM.from_pretrained(_embedded_dir(), dtype=torch.float32)
    if name in BUILTIN:
        from interp._tiny import build_tiny

        return build_tiny(name, load_embedded_tokenizer())[0]
    return AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from interp.models import default_device, load_model

    load_model(args.model)  # make sure the cache exists; the first-ever load dequantizes
    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        bridge = load_model(args.model)
        loads.append(time.perf_counter() - t0)
    device = default_device()
    bare = _bare_model(args.model).to(device).eval()
    tokens = torch.randint(100, 20000, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)

    with torch.no_grad():
        assert torch.allclose(bare(tokens).logits, bridge(tokens), atol=1e-4), "bridge != bare model"
        runs = interleaved({
            "bare_transformers": lambda: bare(tokens).logits,
            "bridge_forward": lambda: bridge(tokens),
            "bridge_run_with_cache_all_hooks": lambda: bridge.run_with_cache(tokens),
        }, repeats=args.repeats)
    n_tokens = args.batch * args.seq
    tps = {k: n_tokens / v["median_s"] for k, v in runs.items()}
    emit({
        "benchmark": "load", "machine": machine(), "model": args.model,
        "cached_load_s": {"first": loads[0], "min": min(loads)},
        "tokens": {"batch": args.batch, "seq": args.seq},
        "tokens_per_s": tps, "timings": runs,
        "ratios": {
            "hook_overhead_forward": tps["bare_transformers"] / tps["bridge_forward"],
            "hook_overhead_run_with_cache": tps["bare_transformers"] / tps["bridge_run_with_cache_all_hooks"],
        },
    })


if __name__ == "__main__":
    main()
