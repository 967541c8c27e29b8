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
