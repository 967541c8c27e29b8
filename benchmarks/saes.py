"""SAE speed: harvesting activations, and the training step.

Harvesting: tokens/s of :class:`saes.activations.ActivationStore` at a middle layer
(the forward stops there) against the bare ``transformers`` forward of the whole model
on the same tokens. Training step: tokens/s of our TopK step (sparse decode) against
the textbook un-fused step (dense ``f @ W_dec``) on identical activations, same sizes
and optimiser; and against SAELens's own step when ``--saelens PYTHON`` names an
interpreter with SAELens installed (it needs TransformerLens 3, so it lives in its own
environment; see README "Benchmarks"). On a GPU (or with ``--mfu``) it also times the
trainer's own ReLU and TopK steps at d_sae = 16·d_in, bf16 autocast, and reports
tokens/s and model-FLOPs utilisation against the device's dense bf16 peak.

    python -m benchmarks.saes [--layer 15 --d-sae 9216 --k 32 --batch 4096 --mfu --saelens PY]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import emit, interleaved, machine, sync


def harvest(model, layer: int, n_rows: int = 64, seq_len: int = 128) -> dict:
    from saes.activations import ActivationStore

    hook = f"blocks.{layer}.hook_resid_post"
    store = ActivationStore(model, [hook], None, batch_size=n_rows * seq_len, seq_len=seq_len, block_rows=n_rows,
                            model_batch=16)
    from interp.corpus import token_rows

    rows = torch.stack(list(token_rows(model, None, n_rows * seq_len, seq_len))).to(model.cfg.device)
    hf = model.original_model

    def ours():
        store._block = None
        store._rows = None
        store._harvest(0)

    def bare():
        with torch.no_grad():
            for i in range(0, n_rows, 16):
                hf(rows[i:i + 16])

    t = interleaved({"store": ours, "bare_full_forward": bare}, repeats=3)
    n = n_rows * seq_len
    return {"layer": layer, "tokens": n, "store_tok_s": n / t["store"]["median_s"],
            "bare_full_forward_tok_s": n / t["bare_full_forward"]["median_s"],
            "ratio": t["bare_full_forward"]["median_s"] / t["store"]["median_s"]}


def train_step(d_in: int, d_sae: int, k: int, batch: int, device: str) -> dict:
    from saes import SAEConfig, make_sae
    from saes.base import SAE

    torch.manual_seed(0)
    x = torch.randn(batch, d_in, device=device)
    sae = make_sae(SAEConfig("topk", d_in, d_sae, k=k)).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step(forward):
        def run():
            out = forward(sae, x)
            loss = sae.mse(x, out.x_hat)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_parallel_grad_()
            opt.step()
            sae.normalize_decoder_()
            sync()
        return run

    t = interleaved({"ours": step(type(sae).forward), "textbook": step(SAE.forward)}, repeats=5)
    return {"d_in": d_in, "d_sae": d_sae, "k": k, "batch": batch,
            "ours_tok_s": batch / t["ours"]["median_s"], "textbook_tok_s": batch / t["textbook"]["median_s"],
            "ratio": t["textbook"]["median_s"] / t["ours"]["median_s"]}


PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense tensor-core FLOP/s


def _peak(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def step_flops(arch: str, d_in: int, d_sae: int, k: int) -> int:
    """Model FLOPs per token of one training step. Encoder: forward 2·d_in·d_sae, weight gradient
    2·d_in·d_sae (the input needs none). ReLU's dense decoder: forward, weight gradient and the
    gradient into f, 2·d_sae·d_in each. TopK's sparse decoder touches k rows: 6·k·d_in."""
    enc = 4 * d_in * d_sae
    return enc + (6 * k * d_in if arch == "topk" else 6 * d_sae * d_in)


def trainer_steps(d_in: int, d_sae: int, k: int, batch: int, device: str, repeats: int = 10) -> dict:
    """Tokens/s and MFU of the trainer's own step (loss, backward, clip, Adam; bf16 autocast on GPU)
    for ReLU and TopK at the same sizes."""
    from saes import SAEConfig, make_sae
    from saes.train import optimizer_step_

    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = _peak(name) if device.startswith("cuda") else None
    out = {"device": name, "peak_bf16_flops": peak, "d_in": d_in, "d_sae": d_sae, "k": k, "batch": batch}
    torch.manual_seed(0)
    x = torch.randn(batch, d_in, device=device)
    for arch in ("relu", "topk"):
        sae = make_sae(SAEConfig(arch, d_in, d_sae, k=k)).to(device)
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

        def run():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
                loss = sae.loss(x, 1.0).loss
            optimizer_step_(sae, opt, loss, 1.0)

        t = interleaved({arch: run}, repeats=repeats, warmup=2)[arch]["median_s"]
        flops = step_flops(arch, d_in, d_sae, k) * batch
        out[arch] = {"tok_s": batch / t, "step_ms": 1e3 * t, "tflop_s": flops / t / 1e12,
                     "mfu": flops / t / peak if peak else None}
    return out


def saelens_step(python: str, d_in: int, d_sae: int, k: int, batch: int) -> dict:
    """SAELens's TopK step in its own environment on the same activations, bracketed by ours."""
    import json
    import subprocess
    import tempfile
    from pathlib import Path

    from safetensors.torch import save_file

    torch.manual_seed(0)
    x = torch.randn(batch, d_in)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "acts.safetensors"
        save_file({"x": x}, str(path))
        before = train_step(d_in, d_sae, k, batch, "cpu")
        proc = subprocess.run([python, str(Path(__file__).with_name("_saelens_step.py")), str(path), str(d_sae),
                               str(k), "5"], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
        after = train_step(d_in, d_sae, k, batch, "cpu")
    ours_tok_s = (before["ours_tok_s"] + after["ours_tok_s"]) / 2
    return {"sae_lens": theirs["sae_lens"], "saelens_tok_s": batch / theirs["median_s"], "ours_tok_s": ours_tok_s,
            "ratio": ours_tok_s / (batch / theirs["median_s"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--d-sae", type=int, default=9216)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--mfu", action="store_true", help="also time the trainer's ReLU and TopK steps (MFU on GPU)")
    ap.add_argument("--saelens", help="python of an environment with SAELens (benchmarks/setup_saelens.sh)")
    args = ap.parse_args()

    from interp.models import load_model

    model = load_model(args.model)
    device = str(model.cfg.device)
    t0 = time.perf_counter()
    result = {"benchmark": "saes", "machine": machine(), "model": args.model,
              "harvest": harvest(model, args.layer),
              "train_step_topk": train_step(model.cfg.d_model, args.d_sae, args.k, args.batch, device)}
    if args.mfu or device.startswith("cuda"):
        result["trainer_steps"] = trainer_steps(model.cfg.d_model, 16 * model.cfg.d_model, args.k, args.batch, device)
    if args.saelens:
        result["train_step_vs_saelens"] = saelens_step(args.saelens, model.cfg.d_model, args.d_sae, args.k,
                                                       args.batch)
    result["seconds"] = time.perf_counter() - t0
    emit(result)


if __name__ == "__main__":
    main()
