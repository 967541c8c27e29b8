"""Greedy generation under hooks: :func:`interp.generation.generate_ids` against two peers.

- ``uncached``: the loop every hooked-model tutorial writes, one full forward of the
  growing sequence per new token, prompt by prompt (the reference for equal tokens).
- ``hf_generate``: ``transformers``' own ``generate`` on the bridge's hooked module,
  prompt by prompt: what the workbench's three helpers called before this one.

Both are timed for one prompt and for a batch of prompts, interleaved, ``--repeats``
times each; a steering hook (a vector added to the residual stream) is attached
throughout, as in steering and feature steering.

``feature_steering`` times :func:`saes.features.steer.steer_feature` (an SAE feature clamped,
its texts before and after, and the feature's activations) against plain generation of the same
prompts with no hook, and against its old form, the unsteered and steered texts generated one
after the other.

    python -m benchmarks.generation [--model smollm2-135m --new-tokens 30 --prompts 8 --repeats 2]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._harness import emit, interleaved, machine, ratio

PROMPTS = ["The Eiffel Tower is located in the city of", "My favourite thing to cook on a Sunday is",
           "The history of the Roman Empire began", "In the morning the scientist walked to",
           "The best way to learn a new language is", "Our team won the match because",
           "The river flows slowly past the old", "When the storm arrived, the villagers"]


def uncached(model, prompt: str, n: int) -> list[int]:
    """Greedy tokens by one full forward of the growing sequence per new token (the reference that
    the tests and this benchmark hold :func:`interp.generation.generate_ids` to)."""
    from interp.tokens import to_tokens

    x = to_tokens(model, prompt)
    with torch.no_grad():
        for _ in range(n):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], 1)
    return x[0, -n:].tolist()


def hf_generate(model, prompt: str, n: int) -> list[int]:
    from interp.tokens import to_tokens

    x = to_tokens(model, prompt)
    with torch.no_grad():
        out = model.original_model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                            pad_token_id=model.tokenizer.eos_token_id)
    return out[0, x.shape[1]:].tolist()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--new-tokens", type=int, default=30)
    ap.add_argument("--prompts", type=int, default=8, help="prompts in the batched comparison")
    ap.add_argument("--layer", type=int, default=3, help="layer of the steering hook")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    from interp.generation import generate_ids
    from interp.models import load_model

    model = load_model(args.model)
    n = args.new_tokens
    prompts = (PROMPTS * (1 + args.prompts // len(PROMPTS)))[:args.prompts]
    vector = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)).to(model.cfg.device)

    def add(resid, *, hook):
        return resid + vector

    result = {"benchmark": "generation", "model": args.model, "machine": machine(), "new_tokens": n,
              "hook": f"blocks.{args.layer}.hook_resid_post + random vector"}
    with model.hooks(fwd_hooks=[(f"blocks.{args.layer}.hook_resid_post", add)]):
        reference = [uncached(model, p, n) for p in prompts]
        ours = generate_ids(model, prompts, n, stop_at_eos=False)
        single = generate_ids(model, prompts[:1], n, stop_at_eos=False)
        hf = [hf_generate(model, p, n) for p in prompts]
        result["equal_tokens"] = {"batched_vs_uncached": ours == reference,
                                  "single_vs_uncached": single[0] == reference[0],
                                  "hf_generate_vs_uncached": hf == reference}
        one = interleaved({
            "ours": lambda: generate_ids(model, prompts[:1], n, stop_at_eos=False),
            "hf_generate": lambda: hf_generate(model, prompts[0], n),
            "uncached": lambda: uncached(model, prompts[0], n),
        }, repeats=args.repeats, warmup=0)
        many = interleaved({
            "ours": lambda: generate_ids(model, prompts, n, stop_at_eos=False),
            "hf_generate": lambda: [hf_generate(model, p, n) for p in prompts],
            "uncached": lambda: [uncached(model, p, n) for p in prompts],
        }, repeats=args.repeats, warmup=0)
    result["one_prompt"] = one
    result[f"{len(prompts)}_prompts"] = many
    result["feature_steering"] = feature_steering(model, prompts[:2], n, args.layer, args.repeats)
    result["ratios"] = {
        f"{label}_{peer}_over_ours": ratio(t, peer, "ours")
        for label, t in (("one_prompt", one), (f"{len(prompts)}_prompts", many))
        for peer in ("uncached", "hf_generate")}
    emit(result)


def feature_steering(model, prompts: list[str], n: int, layer: int, repeats: int) -> dict:
    """steer_feature on ``prompts`` (clamp, a random TopK SAE's feature 3) against unsteered generation."""
    from interp.generation import generate
    from saes import SAEConfig, make_sae
    from saes.features import steer as S

    torch.manual_seed(0)
    d = model.cfg.d_model
    sae = make_sae(SAEConfig("topk", d, 16 * d, k=32, hook_name=f"blocks.{layer}.hook_resid_post")).to(
        model.cfg.device)

    def two_runs():
        old, S.MAX_JOINT_BATCH = S.MAX_JOINT_BATCH, 0
        try:
            return S.steer_feature(model, sae, 3, 4.0, prompts, 1.0, max_new_tokens=n)
        finally:
            S.MAX_JOINT_BATCH = old

    t = interleaved({
        "unsteered": lambda: generate(model, prompts, n),
        "steer_feature": lambda: S.steer_feature(model, sae, 3, 4.0, prompts, 1.0, max_new_tokens=n),
        "steer_feature_two_runs": two_runs,
    }, repeats=repeats, warmup=0)
    return {"prompts": len(prompts), "new_tokens": n, "times": t,
            "steer_feature_over_unsteered": ratio(t, "steer_feature", "unsteered"),
            "two_runs_over_steer_feature": ratio(t, "steer_feature_two_runs", "steer_feature")}


if __name__ == "__main__":
    main()
