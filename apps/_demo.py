"""The demo a new user can start from the Features page: a small SAE on the embedded model and its
feature store, trained and extracted by a background job (:mod:`_jobs`) and cached under the
workbench cache, so that the page has something to show on first run.

Sizes are chosen for a few minutes on 2 CPU cores: a TopK SAE of 2 × d_model latents (k = 16) on
an early residual stream, trained on 250k tokens of BBC News, and its store over 100k tokens. A
full-size SAE (16 × d_model latents, millions of tokens, ``interp sae train``) has far fewer dead
and more specific features; the page says so. ``INTERP_DEMO_TOKENS`` scales both token counts
(the tests use it to finish in seconds).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TRAIN_TOKENS = 250_000
STORE_TOKENS = 100_000


def demo_name(model_name: str) -> str:
    return f"demo-sae-{model_name}"


def demo_paths(model_name: str) -> tuple[Path, Path]:
    """The demo's SAE directory and store, under the job's folder."""
    from _jobs import job_dir

    d = job_dir(demo_name(model_name))
    return d / "sae", d / "store"


def demo_plan(model_name: str, model) -> tuple[list[tuple[str, list[str]]], dict]:
    """The job's steps (two ``interp`` commands) and what they make."""
    scale = float(os.environ.get("INTERP_DEMO_TOKENS", 1.0))
    train_tokens, store_tokens = max(4096, int(TRAIN_TOKENS * scale)), max(1024, int(STORE_TOKENS * scale))
    layer = max(1, model.cfg.n_layers // 5)
    hook = f"blocks.{layer}.hook_resid_post"
    d_sae = 2 * model.cfg.d_model
    sae, store = demo_paths(model_name)
    steps = [
        (f"Train a TopK SAE ({d_sae:,} latents) on {hook}, {train_tokens:,} tokens",
         ["sae", "train", "--model", model_name, "--hook", hook, "--arch", "topk", "--k", "16",
          "--d-sae", str(d_sae), "--tokens", str(train_tokens), "--batch-size", "1024", "--lr", "1e-3",
          "--corpus", "bbc-news", "--out", str(sae)]),
        (f"Extract its features over {store_tokens:,} tokens into a store",
         ["sae", "extract", str(sae), "--model", model_name, "--corpus", "bbc-news", "--tokens",
          str(store_tokens), "--ctx", "64", "--out", str(store)]),
    ]
    return steps, {"hook": hook, "d_sae": d_sae, "layer": layer, "train_tokens": train_tokens,
                   "store_tokens": store_tokens}


def estimate_seconds(model, plan: dict) -> tuple[float, float]:
    """A measured guess of the job's time on this machine: one forward of 4 × 128 tokens, scaled to
    the tokens the job runs to its layer (training) and through the store's layer twice over
    (extraction also writes Parquet). Returns (seconds, tokens per second measured)."""
    import torch

    ids = torch.randint(0, model.cfg.d_vocab, (4, 128), device=model.cfg.device)
    with torch.no_grad():
        model(ids[:, :8])  # warm-up
        t0 = time.perf_counter()
        model(ids)
        elapsed = time.perf_counter() - t0
    tps = ids.numel() / max(elapsed, 1e-6)
    depth = (plan["layer"] + 1) / model.cfg.n_layers
    seconds = (plan["train_tokens"] * depth + 2 * plan["store_tokens"] * depth) / tps + 20.0  # + two model loads
    return seconds, tps


# ---------------------------------------------------------------------------------------------- transcoders

TC_TRAIN_TOKENS = 60_000
TC_STORE_TOKENS = 20_000


def demo_transcoders_name(model_name: str) -> str:
    return f"demo-transcoders-{model_name}"


def demo_transcoders_paths(model_name: str) -> tuple[Path, Path]:
    """The demo transcoder set and its store, under the job's folder."""
    from _jobs import job_dir

    d = job_dir(demo_transcoders_name(model_name))
    return d / "transcoders", d / "store"


def demo_transcoders_plan(model_name: str, model) -> tuple[list[tuple[str, list[str]]], dict]:
    """The Attribution graph page's demo: skip transcoders (TopK, d_model latents, k = 16) for every layer
    from one model pass, then one store of all their features (one more pass) for labels and dashboards.
    Each starts from its MLP's least-squares linear map (``init_skip_``), so 60k tokens reach FVU ~0.4
    (the first demo, 2 × d_model latents from zero on 100k tokens, left 0.91 and a graph of error nodes),
    in minutes on 2 CPU cores. ``INTERP_DEMO_TOKENS`` scales the tokens, as for the SAE demo."""
    scale = float(os.environ.get("INTERP_DEMO_TOKENS", 1.0))
    train_tokens, store_tokens = max(2048, int(TC_TRAIN_TOKENS * scale)), max(1024, int(TC_STORE_TOKENS * scale))
    layers = model.cfg.n_layers
    d_sae = model.cfg.d_model
    tc, store = demo_transcoders_paths(model_name)
    steps = [
        (f"Train {layers} transcoders ({d_sae:,} latents each) from one model pass, {train_tokens:,} tokens",
         ["sae", "train", "--model", model_name, "--transcoder", "--layers", f"0-{layers - 1}", "--arch", "topk",
          "--k", "16", "--d-sae", str(d_sae), "--tokens", str(train_tokens), "--batch-size", "1024", "--lr", "4e-3",
          "--corpus", "bbc-news", "--out", str(tc)]),
        (f"Extract their features over {store_tokens:,} tokens into one store",
         ["sae", "extract", *[str(tc / f"layer_{layer}") for layer in range(layers)], "--model", model_name,
          "--corpus", "bbc-news", "--tokens", str(store_tokens), "--ctx", "64", "--out", str(store)]),
    ]
    return steps, {"layers": layers, "d_sae": d_sae, "train_tokens": train_tokens, "store_tokens": store_tokens}


def estimate_transcoders_seconds(model, plan: dict) -> tuple[float, float]:
    """A measured guess: one timed forward scaled to the harvest and the store's pass, plus the steps of
    every layer's transcoder, timed on one layer-step of the demo's size. Returns (seconds, tokens/s)."""
    import torch

    from saes.config import SAEConfig
    from saes.io import make_sae
    from saes.step import TrainStep, make_optimizer

    ids = torch.randint(0, model.cfg.d_vocab, (4, 128), device=model.cfg.device)
    with torch.no_grad():
        model(ids[:, :8])
        t0 = time.perf_counter()
        model(ids)
        fwd = time.perf_counter() - t0
    tps = ids.numel() / max(fwd, 1e-6)
    d = model.cfg.d_model
    sae = make_sae(SAEConfig("topk", d, plan["d_sae"], k=16, hook_out="out", skip=True))
    step = TrainStep(sae.loss, sae, make_optimizer(sae, 1e-3, "cpu", False), 1.0)
    x = torch.randn(1024, d)
    step(x, 0.5, None, x)
    t0 = time.perf_counter()
    step(x, 0.5, None, x)
    per_step = time.perf_counter() - t0
    steps = max(1, plan["train_tokens"] // 1024)
    seconds = (1.3 * plan["train_tokens"] + 2 * plan["store_tokens"]) / tps + steps * plan["layers"] * per_step + 20.0
    return seconds, tps
