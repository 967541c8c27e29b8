"""Transcoders for every MLP from one model pass: what the harvest and the steps cost.

- **Harvest against the bare forward.** The activation store harvests a block of corpus
  rows at every layer's MLP input and output (60 hooks on SmolLM2) in one forward per
  micro-batch. The peer is the bare full forward of the same rows (``model(tokens)``,
  no hooks): the ratio is what harvesting every layer costs above running the model.
  The issue's bound is 1.3x.
- **Steps.** One training step of all the layers' transcoders against one single-SAE
  step of the same width and batch (the skip path included), per layer and token.

Sides run interleaved, each at least twice, on real activations of the embedded model.

    python -m benchmarks.transcoders [--model smollm2-135m --layers 0-29 --repeats 2]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._harness import emit, interleaved, machine, ratio


def main(argv: list[str] | None = None) -> None:
    from interp.models import load_model
    from saes.activations import ActivationStore
    from saes.config import SAEConfig
    from saes.io import make_sae
    from saes.step import TrainStep, make_optimizer
    from saes.train import default_block_rows
    from saes.transcoder import parse_layers

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layers", default="0-29")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--d-sae", type=int, default=2304)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model = load_model(args.model)
    layers = parse_layers(args.layers, model.cfg.n_layers)
    hooks = [h for layer in layers for h in (f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_mlp_out")]
    rows = default_block_rows(len(hooks), args.batch_size, 128)
    store = ActivationStore(model, hooks, None, args.batch_size, 128, rows, max_norm_ratio=0)
    from interp.corpus import token_rows

    corpus_rows = [r for _, r in zip(range(rows), token_rows(model, None, None, 128))]

    def harvest():
        store._rows, store._next_row = iter(corpus_rows), 0  # the same rows each time, already tokenized
        return store._harvest(0)

    def bare():
        with torch.no_grad():
            for i in range(0, rows, store.model_batch):
                model(torch.stack(corpus_rows[i:i + store.model_batch]).to(model.cfg.device))

    fwd = interleaved({"bare_forward": bare, "harvest_all_layers": harvest}, repeats=args.repeats)
    acts = harvest()
    x0 = {layer: acts[f"blocks.{layer}.hook_resid_mid"][:args.batch_size] for layer in layers}
    y0 = {layer: acts[f"blocks.{layer}.hook_mlp_out"][:args.batch_size] for layer in layers}

    def stepper(layer: int, transcoder: bool):
        cfg = SAEConfig("topk", model.cfg.d_model, args.d_sae, k=args.k, hook_name=f"blocks.{layer}.hook_resid_mid",
                        hook_out=f"blocks.{layer}.hook_mlp_out" if transcoder else "", skip=transcoder)
        sae = make_sae(cfg)
        step = TrainStep(sae.loss, sae, make_optimizer(sae, 3e-4, "cpu", False), 1.0)
        return lambda: step(x0[layer], 0.5, None, y0[layer] if transcoder else None)

    steps = {layer: stepper(layer, True) for layer in layers}
    single = stepper(layers[0], False)
    st = interleaved({"single_sae_step": single, "all_layers_step": lambda: [s() for s in steps.values()]},
                     repeats=args.repeats)
    per_layer = st["all_layers_step"]["median_s"] / len(layers)
    emit({"benchmark": "transcoders", "model": args.model, "machine": machine(), "layers": len(layers),
          "hooks": len(hooks), "block_rows": rows, "block_tokens": rows * 127, "forward": fwd, "steps": st,
          "ratios": {"harvest_over_bare_forward": ratio(fwd, "harvest_all_layers", "bare_forward"),
                     "transcoder_step_per_layer_over_single_sae_step": {
                         "median": per_layer / st["single_sae_step"]["median_s"]}},
          "tokens_per_s": {"bare_forward": rows * 128 / fwd["bare_forward"]["median_s"],
                           "harvest_all_layers": rows * 128 / fwd["harvest_all_layers"]["median_s"],
                           "training_all_layers": args.batch_size / st["all_layers_step"]["median_s"]}})


if __name__ == "__main__":
    main()
