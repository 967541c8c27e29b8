"""Feature extraction into the store, and its DuckDB queries, against a brute-force recomputation.

The reference cuts each document itself, runs every context alone through the model and applies
the SAE by the textbook TopK formula, f = ReLU(TopK((x − b_dec) W_enc + b_enc)), in numpy.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.errors import InterpError
from saes import SAEConfig, make_sae, save_sae
from saes.features.extract import ExtractConfig, extract_features
from saes.features.store import FeatureStore
from tests.conftest import TINY, news_corpus

ROOT = Path(__file__).resolve().parent.parent
HOOK = "blocks.1.hook_resid_post"
CTX = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return news_corpus(tmp_path_factory.mktemp("fcorpus"), 12)


def tiny_sae(model, path, seed=0, d_sae=48, k=4):
    torch.manual_seed(seed)
    sae = make_sae(SAEConfig("topk", model.cfg.d_model, d_sae, k=k, hook_name=HOOK, model_name=model.cfg.model_name))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    save_sae(sae, path)
    return sae


def _cfg(corpus, **kw):
    return ExtractConfig(**{"corpus": corpus, "ctx": CTX, "contexts_per_shard": 8, "model_batch": 3,
                            "tokens": 1500, "max_norm_ratio": 0.0, **kw})


def _reference(model, sae, corpus, ctx=CTX, limit=1500):
    """Every (context, position) → f over the contexts the job should cut, computed one context at a time."""
    from interp.corpus import documents

    W_enc, b_enc, W_dec, b_dec = (getattr(sae, n).detach().double().numpy() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    bos = model.tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
    ctxs, total = [], 0
    for d, text in enumerate(documents(corpus)):
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        for s in range(0, len(ids), ctx):
            if len(ids[s:s + ctx]) >= 2 and total < limit:
                ctxs.append((d, s, ids[s:s + ctx]))
                total += len(ids[s:s + ctx])
    acts = {}
    for c, (_, _, ids) in enumerate(ctxs):
        toks = torch.tensor([([bos] if bos is not None else []) + ids])
        _, cache = model.run_with_cache(toks, names_filter=HOOK)
        x = cache[HOOK][0, 0 if bos is None else 1:].double().numpy()
        pre = (x - b_dec) @ W_enc + b_enc
        for p in range(0 if bos is not None else 1, len(ids)):  # without a BOS the first token is the sink
            top = np.argsort(-pre[p])[:sae.cfg.k]
            for j in top:
                if pre[p, j] > 0:
                    acts[(c, p, int(j))] = pre[p, j]
    seen = sum(len(ids) - (bos is None) for _, _, ids in ctxs)
    return ctxs, acts, seen


@pytest.mark.parametrize("name", TINY)
def test_store_equals_brute_force(tiny_models, corpus, tmp_path, name):
    model = tiny_models[name]
    sae = tiny_sae(model, tmp_path / "sae")
    res = extract_features(model, [tmp_path / "sae"], tmp_path / "store", _cfg(corpus))
    ctxs, ref, seen = _reference(model, sae, corpus)
    store = FeatureStore(tmp_path / "store")
    assert res.contexts == len(ctxs) and res.tokens == sum(len(i) for _, _, i in ctxs)
    assert store.manifest["seen"] == seen and res.skipped_sink == (0 if model.cfg.default_prepend_bos else len(ctxs))
    rows = store.query("SELECT context, position, feature, value FROM {acts}")
    got = {(r["context"], r["position"], r["feature"]): r["value"] for r in rows}
    assert got.keys() == ref.keys()
    assert max(abs(got[k] - ref[k]) for k in ref) < 1e-4
    toks = store.query("SELECT context, document, doc_offset, position, token FROM {tokens} ORDER BY context, position")
    assert [(t["document"], t["doc_offset"] - t["position"]) for t in toks if t["position"] == 0] == \
        [(d, s) for d, s, _ in ctxs]
    assert [t["token"] for t in toks] == [i for _, _, ids in ctxs for i in ids]
    for f in range(sae.cfg.d_sae):
        vals = np.array([v for (c, p, j), v in ref.items() if j == f])
        row = store.feature_row(f)
        assert row["fires"] == len(vals) and row["frequency"] == pytest.approx(len(vals) / seen)
        if len(vals):
            assert row["max"] == pytest.approx(vals.max(), abs=1e-4)
            assert row["mean"] == pytest.approx(vals.mean(), abs=1e-4)
            assert row["quantiles"] == pytest.approx(np.quantile(vals, [0.5, 0.9, 0.99]).tolist(), abs=1e-4)
            bins = np.minimum(np.floor(vals / vals.max() * 40), 39).astype(int)
            assert row["hist_counts"] == np.bincount(bins, minlength=40).tolist()
    # top-k contexts: one per context, by the context's maximum
    f = max(range(sae.cfg.d_sae), key=lambda j: sum(1 for k in ref if k[2] == j))
    best: dict[int, float] = {}
    for (c, p, j), v in ref.items():
        if j == f:
            best[c] = max(best.get(c, 0.0), v)
    want = sorted(best, key=lambda c: -best[c])[:5]
    top = store.top_contexts(f, 5)
    assert [t.context for t in top] == want
    for t in top:
        d, s, ids = ctxs[t.context]
        assert (t.document, t.doc_offset) == (d, s) and len(t.tokens) == len(ids)
        assert t.values == pytest.approx([ref.get((t.context, p, f), 0.0) for p in range(len(ids))], abs=1e-4)
    groups = store.quantile_groups(f, groups=4, per_group=3)
    for lo, hi, members in groups:
        assert all(lo - 1e-6 <= m.max_value <= hi + 1e-6 for m in members) and len(members) <= 3


def test_logit_effects_and_neighbours_match_the_formula(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]  # RMSNorm: effect = (W_dec[f] ⊙ g) W_U
    sae = tiny_sae(model, tmp_path / "sae")
    extract_features(model, [tmp_path / "sae"], tmp_path / "store", _cfg(corpus, tokens=200))
    row = FeatureStore(tmp_path / "store").feature_row(5)
    eff = (sae.W_dec[5] * model.ln_final.w) @ model.W_U
    assert row["top_logit_tokens"] == eff.topk(10).indices.tolist()
    assert row["bottom_logit_tokens"] == (-eff).topk(10).indices.tolist()
    unit = torch.nn.functional.normalize(sae.W_dec, dim=-1)
    cos = unit @ unit[5]
    cos[5] = -2
    assert row["neighbour_features"] == cos.topk(10).indices.tolist()


def _dump(path):
    s = FeatureStore(path)
    return (s.query("SELECT * FROM {tokens} ORDER BY context, position"),
            s.query("SELECT * FROM {acts} ORDER BY context, position, feature"),
            s.query("SELECT * FROM {features} ORDER BY feature"))


def test_a_killed_job_resumes_to_the_same_store(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    tiny_sae(model, tmp_path / "sae")
    extract_features(model, [tmp_path / "sae"], tmp_path / "whole", _cfg(corpus))

    def kill(shard):
        if shard == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(model, [tmp_path / "sae"], tmp_path / "resumed", _cfg(corpus), on_shard=kill)
    assert len(list((tmp_path / "resumed" / "shards").glob("*.json"))) == 3
    # a shard in flight when the job died: its file is there, its commit record is not
    (tmp_path / "resumed" / "tokens" / "00003.parquet").write_bytes(b"half a file")
    partial = FeatureStore(tmp_path / "resumed")  # readable already: three committed shards
    assert len(partial.shards) == 3
    res = extract_features(model, [tmp_path / "sae"], tmp_path / "resumed", _cfg(corpus))
    assert res.shards_written == res.shards - 3
    assert _dump(tmp_path / "resumed") == _dump(tmp_path / "whole")


def test_two_gloo_ranks_write_the_store_one_process_writes(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    tiny_sae(model, tmp_path / "sae")
    extract_features(model, [tmp_path / "sae"], tmp_path / "single", _cfg(corpus))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "INTERP_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541",
                           str(ROOT / "tests" / "_extract_ddp_worker.py"), str(tmp_path / "sae"), str(tmp_path / "ddp"),
                           corpus, str(CTX)], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [json.loads(p.read_text())["shard"] for p in sorted((tmp_path / "ddp" / "shards").glob("*.json"))]
    assert written == list(range(len(written))) and len(written) > 2
    assert _dump(tmp_path / "ddp") == _dump(tmp_path / "single")


def test_bad_stores_and_inputs_are_one_line(tiny_models, corpus, tmp_path, capsys):
    model = tiny_models["tiny-llama"]
    tiny_sae(model, tmp_path / "sae")
    tiny_sae(model, tmp_path / "other" / "sae", seed=1)
    extract_features(model, [tmp_path / "sae"], tmp_path / "store", _cfg(corpus))
    with pytest.raises(InterpError, match="different SAE"):
        extract_features(model, [tmp_path / "other" / "sae"], tmp_path / "store", _cfg(corpus))
    tiny_sae(tiny_models["tiny-gpt2"], tmp_path / "gpt2" / "sae")
    with pytest.raises(InterpError, match="written with model 'tiny-llama'"):
        extract_features(tiny_models["tiny-gpt2"], [tmp_path / "gpt2" / "sae"], tmp_path / "store", _cfg(corpus))
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(InterpError, match="out of range"):
        store.top_contexts(48)
    # a damaged shard is reported and left out; the rest still answers
    victim = tmp_path / "store" / "acts" / "sae" / "00001.parquet"
    victim.write_bytes(victim.read_bytes()[:-40])
    damaged = FeatureStore(tmp_path / "store")
    assert "1 shard(s) missing or damaged" in capsys.readouterr().err
    assert len(damaged.shards) == len(store.shards) - 1 and damaged.top_contexts(3, 3)
    (tmp_path / "store" / "tokens" / "00002.parquet").unlink()
    assert len(FeatureStore(tmp_path / "store", quiet=True).shards) == len(store.shards) - 2
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InterpError, match="no text"):
        extract_features(model, [tmp_path / "sae"], tmp_path / "e", _cfg(str(empty)))
    assert not (tmp_path / "e").exists()  # nothing written
    with pytest.raises(InterpError, match="at least 2"):
        ExtractConfig(ctx=1)


@pytest.mark.slow
def test_embedded_model_store_dashboard_and_scorer_check(smol, tmp_path):
    """Integration: the embedded model (no BOS: every context's first token is the sink), a random SAE at L2,
    a dashboard from the store, and the scorer check on a known latent (reported in the README; the 135M
    scorer is not asserted to separate the explanations, only to produce well-formed scores)."""
    from saes.features.autointerp import scorer_check
    from saes.features.dashboard import feature_dashboard

    torch.manual_seed(0)
    save_sae(make_sae(SAEConfig("topk", 576, 256, k=8, hook_name="blocks.2.hook_resid_post",
                                model_name=smol.cfg.model_name)), tmp_path / "sae")
    res = extract_features(smol, [tmp_path / "sae"], tmp_path / "store",
                           ExtractConfig(corpus="bbc-news", tokens=1024, ctx=64, model_batch=8))
    assert res.skipped_sink == res.contexts and res.tokens >= 1024
    store = FeatureStore(tmp_path / "store")
    f = store.query("SELECT feature FROM {features} ORDER BY fires DESC LIMIT 1")[0]["feature"]
    dash = feature_dashboard(store, f)
    assert dash.top and dash.top[0].max_value == pytest.approx(dash.max) and len(dash.top_logits) == 10
    check = scorer_check(smol, "bbc-news", {str(i) for i in range(10)}, "numbers and digits", "names of animals", n=4)
    for label in ("correct", "wrong"):
        for kind in ("detection", "fuzzing"):
            s = check[label][kind]
            assert 0 <= s["low"] <= s["balanced_accuracy"] <= s["high"] <= 1 and s["n_positive"] == 4


def test_sigkill_midway_then_the_same_command_finishes_the_store(tiny_models, corpus, tmp_path):
    """A real kill: `interp sae extract` in a subprocess gets SIGKILL once two shards are committed; the
    same command then writes only the rest, and the store equals an uninterrupted run's."""
    import signal
    import time

    model = tiny_models["tiny-llama"]
    tiny_sae(model, tmp_path / "sae")
    args = [sys.executable, "-m", "interp", "sae", "extract", str(tmp_path / "sae"), "--model", "tiny-llama",
            "--corpus", corpus, "--ctx", "16", "--contexts-per-shard", "4", "--model-batch", "1",
            "--max-norm-ratio", "0", "--json"]
    env = {**os.environ, "INTERP_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    shards = tmp_path / "killed" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    done = len(list(shards.glob("*.json")))
    resumed = subprocess.run(args + ["--out", str(tmp_path / "killed")], env=env, capture_output=True, text=True,
                             cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["shards_written"] == out["shards"] - done and done >= 2
    whole = subprocess.run(args + ["--out", str(tmp_path / "whole")], env=env, capture_output=True, text=True,
                           cwd=ROOT, timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert _dump(tmp_path / "killed") == _dump(tmp_path / "whole")
