"""SAE speed: harvesting activations, the training step, MFU, and training from cached activations.

- **Harvest**: tokens/s of :class:`saes.activations.ActivationStore` filling one block at a
  middle layer (the forward stops there) against the bare ``transformers`` forward of the
  whole model on the same tokens.
- **Step**: tokens/s of the trainer's own TopK step (loss, backward, clip, Adam) against the
  textbook un-fused step (dense ``f @ W_dec``, plain Adam) on identical activations, in
  fp32 and, on a GPU, under bf16 autocast.
- **SAELens** (``--saelens PYTHON``, an interpreter with SAELens installed; it pins
  TransformerLens 3, so it lives in its own environment, see README "Benchmarks"): its
  TopK training step on the same activations and device, bracketed by ours, in fp32 and
  (GPU) bf16 autocast.
- **MFU** (``--mfu``, always on a GPU): the trainer's ReLU and TopK steps at d_sae = 16·d_in
  over ``--mfu-batches`` (the trainer's CUDA-graph step, eager, ``torch.compile``d), as tokens/s, TFLOP/s and model-FLOPs
  utilisation against the device's dense bf16 peak.
- **From the cache** (``--cached-tokens N``): :func:`saes.train.train` reading activation
  shards written by an earlier run, its steady tokens/s from ``metrics.jsonl`` against the
  pure step at the same batch.

    python -m benchmarks.saes [--model M --layer 15 --d-sae 9216 --k 32 --batch 4096 --mfu --saelens PY]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._harness import emit, interleaved, machine

PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s


def harvest(model, layer: int, n_rows: int = 64, seq_len: int = 128, corpus: str | None = None) -> dict:
    from saes.activations import ActivationStore

    hook = f"blocks.{layer}.hook_resid_post"

    def store():  # a fresh store holds no block: .block(0) runs the model
        return ActivationStore(model, [hook], corpus, batch_size=seq_len - 1, seq_len=seq_len, block_rows=n_rows,
                               max_norm_ratio=0)

    from interp.corpus import token_rows

    rows = torch.stack(list(token_rows(model, corpus, n_rows * seq_len, seq_len))).to(model.cfg.device)
    hf, step = model.original_model, store().model_batch

    def bare():
        with torch.no_grad():
            for i in range(0, n_rows, step):
                hf(rows[i:i + step])

    t = interleaved({"store": lambda: store().block(0), "bare_full_forward": bare}, repeats=3)
    n = n_rows * seq_len
    return {"layer": layer, "tokens": n, "store_tok_s": n / t["store"]["median_s"],
            "bare_full_forward_tok_s": n / t["bare_full_forward"]["median_s"],
            "ratio": t["bare_full_forward"]["median_s"] / t["store"]["median_s"]}


def _autocast(device: str, bf16: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.startswith("cuda"))


def trainer_step(sae, x, device: str, bf16: bool, mode: str = "default"):
    """One step exactly as :func:`saes.train.train` takes it, as a closure. ``mode``: the trainer's
    default (CUDA graphs on a GPU), ``eager``, or ``compile`` (``torch.compile``, eager launches)."""
    from saes.step import TrainStep, make_optimizer

    graphs = mode == "default" and device.startswith("cuda")
    opt = make_optimizer(sae, 1e-4, device, graphs)
    step = TrainStep(torch.compile(sae.loss) if mode == "compile" else sae.loss, sae, opt, 1.0,
                     bf16=bf16 and device.startswith("cuda"), graphs=graphs)
    return lambda: step(x, 1.0, None)


def train_step(d_in: int, d_sae: int, k: int, batch: int, device: str, bf16: bool = False) -> dict:
    from saes import SAEConfig, make_sae
    from saes.base import SAE

    torch.manual_seed(0)
    x = torch.randn(batch, d_in, device=device)
    ours = trainer_step(make_sae(SAEConfig("topk", d_in, d_sae, k=k)).to(device), x, device, bf16)
    sae = make_sae(SAEConfig("topk", d_in, d_sae, k=k)).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def textbook():
        with _autocast(device, bf16):
            loss = sae.mse(x, SAE.forward(sae, x).x_hat)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = interleaved({"ours": ours, "textbook": textbook}, repeats=5, warmup=5)  # past the graph capture
    return {"d_in": d_in, "d_sae": d_sae, "k": k, "batch": batch, "bf16": bf16,
            "ours_tok_s": batch / t["ours"]["median_s"], "textbook_tok_s": batch / t["textbook"]["median_s"],
            "ratio": t["textbook"]["median_s"] / t["ours"]["median_s"]}


def _peak(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def step_flops(arch: str, d_in: int, d_sae: int, k: int) -> int:
    """Model FLOPs per token of one training step. Encoder: forward 2·d_in·d_sae, weight gradient
    2·d_in·d_sae (the input needs none). ReLU's dense decoder: forward, weight gradient and the
    gradient into f, 2·d_sae·d_in each. TopK's decoder touches k rows: 6·k·d_in (counted sparse
    even where the dense product is faster, so MFU never credits wasted work)."""
    enc = 4 * d_in * d_sae
    return enc + (6 * k * d_in if arch == "topk" else 6 * d_sae * d_in)


def trainer_steps(d_in: int, d_sae: int, k: int, batches: list[int], device: str, compile_too: bool,
                  repeats: int = 10) -> dict:
    """Tokens/s and MFU of the trainer's own step (loss, backward, clip, Adam; bf16 autocast on GPU)
    for ReLU and TopK, over batch sizes: the trainer's default (CUDA graphs on a GPU), eager, and
    ``torch.compile``d."""
    from saes import SAEConfig, make_sae

    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = _peak(name) if device.startswith("cuda") else None
    out = {"device": name, "peak_bf16_flops": peak, "d_in": d_in, "d_sae": d_sae, "k": k, "rows": []}
    for arch in ("relu", "topk"):
        for batch in batches:
            modes = ["default", "eager"] if device.startswith("cuda") else ["default"]
            for mode in modes + (["compile"] if compile_too else []):
                torch.manual_seed(0)
                x = torch.randn(batch, d_in, device=device)
                run = trainer_step(make_sae(SAEConfig(arch, d_in, d_sae, k=k)).to(device), x, device, True, mode)
                t = interleaved({arch: run}, repeats=repeats, warmup=5)[arch]["median_s"]
                flops = step_flops(arch, d_in, d_sae, k) * batch
                out["rows"].append({"arch": arch, "batch": batch, "mode": mode, "tok_s": batch / t,
                                    "step_ms": 1e3 * t, "tflop_s": flops / t / 1e12,
                                    "mfu": flops / t / peak if peak else None})
    return out


def saelens_step(python: str, d_in: int, d_sae: int, k: int, batch: int, device: str, bf16: bool,
                 rounds: int = 2) -> dict:
    """SAELens's TopK step in its own environment on the same activations and device, bracketed by
    ours: ``rounds`` × (ours, SAELens), then ours once more. The ratio uses the medians; the spread
    is the range of per-round ratios."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    x = torch.randn(batch, d_in)
    ours, theirs, version = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acts.safetensors"
        save_file({"x": x}, str(path))
        ours.append(train_step(d_in, d_sae, k, batch, device, bf16)["ours_tok_s"])
        for _ in range(rounds):
            proc = subprocess.run([python, str(Path(__file__).with_name("_saelens_step.py")), str(path), str(d_sae),
                                   str(k), "10", device, "bf16" if bf16 else "fp32"],
                                  capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            theirs.append(batch / res["median_s"])
            version = res["sae_lens"]
            ours.append(train_step(d_in, d_sae, k, batch, device, bf16)["ours_tok_s"])
    per_round = [min(ours[i], ours[i + 1]) / theirs[i] for i in range(rounds)]
    return {"sae_lens": version, "device": device, "bf16": bf16, "batch": batch,
            "saelens_tok_s": statistics.median(theirs), "ours_tok_s": statistics.median(ours),
            "ratio": statistics.median(ours) / statistics.median(theirs),
            "ratio_range": [min(per_round), max(per_round)]}


def cached_training(model, layer: int, tokens: int, batch: int, d_sae: int, k: int, corpus: str | None = None) -> dict:
    """The trainer reading cached shards, against its own pure step at the same batch."""
    from saes import SAEConfig, make_sae
    from saes.train import TrainConfig, train

    device = str(model.cfg.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(hook=f"blocks.{layer}.hook_resid_post", d_sae=d_sae, k=k, tokens=tokens, batch_size=batch,
                          activation_cache=str(Path(tmp) / "cache"), log_every=10, checkpoint_every=10**9,
                          corpus=corpus)
        t0 = time.perf_counter()
        train(model, cfg, Path(tmp) / "fill")  # writes the shards
        fill_s = time.perf_counter() - t0
        train(model, cfg, Path(tmp) / "read")
        lines = [json.loads(l) for l in (Path(tmp) / "read" / "metrics.jsonl").read_text().splitlines()]
    steady = [l["tokens_per_s"] for l in lines[1:]] or [lines[-1]["tokens_per_s"]]
    torch.manual_seed(0)
    x = torch.randn(batch, model.cfg.d_model, device=device)
    run = trainer_step(make_sae(SAEConfig("topk", model.cfg.d_model, d_sae, k=k)).to(device), x, device, True)
    pure = batch / interleaved({"step": run}, repeats=10, warmup=3)["step"]["median_s"]
    cached = statistics.median(steady)
    return {"tokens": tokens, "batch": batch, "fill_run_s": fill_s, "from_cache_tok_s": cached,
            "from_cache_tok_s_range": [min(steady), max(steady)], "pure_step_tok_s": pure,
            "pure_over_cached": pure / cached}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default=None, help="default: cuda if there is one, else cpu")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--d-sae", type=int, default=9216)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--harvest-rows", type=int, default=64)
    ap.add_argument("--corpus", help="corpus of the harvest and cache runs (default: the default corpus)")
    ap.add_argument("--mfu", action="store_true", help="also time the trainer's ReLU and TopK steps (MFU on GPU)")
    ap.add_argument("--mfu-batches", default="1024,4096,16384,32768")
    ap.add_argument("--no-compile", action="store_true", help="MFU sweep without the torch.compile rows")
    ap.add_argument("--cached-tokens", type=int, default=0, help="train this many tokens from the cache (0: skip)")
    ap.add_argument("--saelens", help="python of an environment with SAELens (benchmarks/setup_saelens.sh)")
    ap.add_argument("--skip", default="", help="comma-separated parts not to run: harvest, step, mfu")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    from interp.models import load_model

    model = load_model(args.model, device=args.device)
    device = str(model.cfg.device)
    gpu = device.startswith("cuda")
    t0 = time.perf_counter()
    result = {"benchmark": "saes", "machine": machine(), "model": args.model}
    if "harvest" not in skip:
        result["harvest"] = harvest(model, min(args.layer, model.cfg.n_layers - 1), args.harvest_rows, corpus=args.corpus)
    if "step" not in skip:
        result["train_step_topk"] = [train_step(model.cfg.d_model, args.d_sae, args.k, args.batch, device, bf16)
                                     for bf16 in ([False, True] if gpu else [False])]
    if (args.mfu or gpu) and "mfu" not in skip:
        batches = [int(b) for b in args.mfu_batches.split(",")]
        result["trainer_steps"] = trainer_steps(model.cfg.d_model, 16 * model.cfg.d_model, args.k, batches, device,
                                                compile_too=not args.no_compile)
    if args.cached_tokens:
        result["from_cache"] = cached_training(model, min(args.layer, model.cfg.n_layers - 1), args.cached_tokens,
                                               args.batch, args.d_sae, args.k, args.corpus)
    if args.saelens:
        result["train_step_vs_saelens"] = [
            saelens_step(args.saelens, model.cfg.d_model, args.d_sae, args.k, args.batch, device, bf16)
            for bf16 in ([False, True] if gpu else [False])]
    result["seconds"] = time.perf_counter() - t0
    emit(result)


if __name__ == "__main__":
    main(sys.argv[1:])
