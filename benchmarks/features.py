"""Feature-store speed: extraction against harvesting, top-k queries, whole dashboards.

- **Extraction** (the bar: at least 80% of harvesting's tokens/s at the same layer):
  tokens/s of :func:`saes.features.extract.extract_features` writing a fresh store (model pass,
  SAE encode, Parquet writes and commit records; the per-feature tables that follow are
  a fixed cost per store, reported apart) against
  :class:`saes.activations.ActivationStore` harvesting the same number of tokens at the
  SAE's hook, interleaved, ``--rounds`` each.
- **Queries** on a store of at least 1M tokens (``--store``, built once with
  ``--build-tokens`` if absent): the top-k contexts of ``--features`` random features that
  fire, each timed ``--rounds`` times, against a full read of the activation shards with
  pyarrow and a numpy filter (what a store without DuckDB and row-group statistics
  costs). Reports the store's size on disk and bytes per token.
- **Dashboards**: :func:`saes.features.dashboard.feature_dashboard` for the same features, from a
  freshly opened store (a cold call, as the CLI makes it).

    python -m benchmarks.features --sae DIR [--store STORE --build-tokens 1000000 --tokens 8192]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._harness import emit, interleaved, machine


def extraction(model, sae_dir: str, tokens: int, rounds: int, corpus: str | None) -> dict:
    from saes.activations import ActivationStore
    from saes.features.extract import ExtractConfig, extract_features
    from saes.io import load_sae

    hook = load_sae(sae_dir).cfg.hook_name
    seq = 128
    rows = max(1, tokens // seq)
    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    runs = {"n": 0}

    streaming: list[float] = []

    def extract():
        runs["n"] += 1
        res = extract_features(model, [sae_dir], tmp / f"s{runs['n']}",
                               ExtractConfig(corpus=corpus, tokens=rows * seq, ctx=seq))
        streaming.append(res.tokens / res.tokens_per_second)

    def harvest():
        ActivationStore(model, [hook], corpus, batch_size=seq - 1, seq_len=seq, block_rows=rows, max_norm_ratio=0).block(0)

    times = interleaved({"harvest": harvest, "extract": extract}, repeats=rounds, warmup=1)
    shutil.rmtree(tmp, ignore_errors=True)
    n = rows * seq
    streaming = streaming[1:]  # the warm-up run left out, as interleaved() does
    h = times["harvest"]
    return {"hook": hook, "tokens": n, "times": times, "streaming_s": streaming,
            "harvest_tok_s": n / h["median_s"], "extract_tok_s": n / statistics.median(streaming),
            "extract_whole_job_tok_s": n / times["extract"]["median_s"],
            "extract_over_harvest": h["median_s"] / statistics.median(streaming),
            "spread": [h["min_s"] / max(streaming), h["max_s"] / min(streaming)],
            "note": "extract_tok_s is the shard phase (model pass, encode, Parquet writes, commit records); the "
                    "whole job adds the per-feature tables (statistics, logit effects over the vocabulary, "
                    "decoder neighbours), a fixed cost per store"}


def queries(store_path: str, n_features: int, rounds: int, seed: int = 0) -> dict:
    import pyarrow.parquet as pq

    from saes.features.dashboard import feature_dashboard
    from saes.features.store import FeatureStore

    store = FeatureStore(store_path)
    size = sum(f.stat().st_size for f in Path(store_path).rglob("*") if f.is_file())
    firing = [r["feature"] for r in store.query("SELECT feature FROM {features} WHERE fires >= 5")]
    feats = random.Random(seed).sample(firing, min(n_features, len(firing)))
    files = store.files("acts")

    def full_scan(f):
        t = pq.read_table(files, columns=["feature", "context", "value"]) if len(files) == 1 else None
        tables = [t] if t is not None else [pq.read_table(p, columns=["feature", "context", "value"]) for p in files]
        best: dict[int, float] = {}
        for t in tables:
            sel = t.column("feature").to_numpy() == f
            for c, v in zip(t.column("context").to_numpy()[sel], t.column("value").to_numpy()[sel]):
                best[int(c)] = max(best.get(int(c), 0.0), float(v))
        return sorted(best.items(), key=lambda kv: -kv[1])[:10]

    top_s, scan_s, dash_s = [], [], []
    for f in feats:
        fns = {"full_scan": lambda f=f: full_scan(f), "duckdb_top_k": lambda f=f: store.top_contexts(f, 10)}
        t = interleaved(fns, repeats=rounds, warmup=1)
        top_s.append(t["duckdb_top_k"]["median_s"])
        scan_s.append(t["full_scan"]["median_s"])
        for _ in range(rounds):
            t0 = time.perf_counter()
            feature_dashboard(FeatureStore(store_path, quiet=True), f)
            dash_s.append(time.perf_counter() - t0)
    tokens = store.manifest["tokens"]
    return {"store": store_path, "tokens": tokens, "bytes": size, "bytes_per_token": size / tokens,
            "features": feats, "top_k_s": {"median": statistics.median(top_s), "max": max(top_s), "min": min(top_s)},
            "full_scan_s": {"median": statistics.median(scan_s), "max": max(scan_s), "min": min(scan_s)},
            "top_k_speedup_over_full_scan": statistics.median(s / t for s, t in zip(scan_s, top_s)),
            "dashboard_s": {"median": statistics.median(dash_s), "max": max(dash_s), "min": min(dash_s)}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sae", required=True, help="SAE directory trained on --model")
    p.add_argument("--store", help="a store of at least 1M tokens (built here with --build-tokens if absent)")
    p.add_argument("--build-tokens", type=int, default=1_000_000)
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--tokens", type=int, default=8192, help="tokens per extraction/harvest round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--features", type=int, default=5)
    p.add_argument("--corpus", default=None)
    p.add_argument("--skip-extraction", action="store_true")
    args = p.parse_args(argv)
    from interp.models import load_model
    from saes.features.extract import ExtractConfig, extract_features

    model = load_model(args.model)
    out = {"benchmark": "features", "machine": machine(), "model": args.model}
    if not args.skip_extraction:
        out["extraction"] = extraction(model, args.sae, args.tokens, args.rounds, args.corpus)
    if args.store:
        if not (Path(args.store) / "manifest.json").exists() or \
                not __import__("json").loads((Path(args.store) / "manifest.json").read_text()).get("complete"):
            t0 = time.perf_counter()
            res = extract_features(model, [args.sae], args.store, ExtractConfig(corpus=args.corpus, tokens=args.build_tokens, ctx=args.ctx))
            out["build"] = {"tokens": res.tokens, "seconds": time.perf_counter() - t0,
                            "tok_s": res.tokens_per_second}
        out["queries"] = queries(args.store, args.features, args.rounds)
    emit(out)


if __name__ == "__main__":
    main()
