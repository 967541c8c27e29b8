"""Every benchmark module runs end to end on a tiny model with tiny sizes, so none can rot unnoticed.
Timings are not checked (they belong in the benchmarks' own output, never in tests); the JSON and
its correctness fields are."""

import json

import pytest

import benchmarks.explorer_start
import benchmarks.features
import benchmarks.gcg
import benchmarks.generation
import benchmarks.graph
import benchmarks.graph_quality
import benchmarks.load
import benchmarks.overhead
import benchmarks.patching
import benchmarks.relations
import benchmarks.rome
import benchmarks.sae_efficiency
import benchmarks.sae_quality
import benchmarks.saes
import benchmarks.tracing
import benchmarks.transcoders
from benchmarks._harness import chromium_path


def _run(module, argv, capsys) -> dict:
    module.main(argv)
    return json.loads(capsys.readouterr().out)


def test_load_benchmark(capsys):
    out = _run(benchmarks.load, ["--model", "tiny-llama", "--batch", "2", "--seq", "16", "--repeats", "1"], capsys)
    assert out["model"] == "tiny-llama" and out["ratios"]["hook_overhead_forward"] > 0


def test_generation_benchmark(capsys):
    out = _run(benchmarks.generation, ["--model", "tiny-llama", "--new-tokens", "4", "--prompts", "3",
                                       "--layer", "1", "--repeats", "1"], capsys)
    assert out["equal_tokens"]["batched_vs_uncached"] and out["equal_tokens"]["single_vs_uncached"]
    assert out["ratios"]["3_prompts_uncached_over_ours"]["median"] > 0
    assert out["feature_steering"]["steer_feature_over_unsteered"]["median"] > 0


def test_overhead_benchmark(capsys):
    out = _run(benchmarks.overhead, ["--model", "tiny-llama", "--repeats", "1", "--warmup", "0"], capsys)
    assert set(out["commands"]) == {"help", "models", "attention", "import_floor"}
    assert out["commands"]["help"]["median_s"] < out["commands"]["attention"]["median_s"]


def test_patching_benchmark(capsys):
    out = _run(benchmarks.patching, ["--model", "tiny-gpt2", "--sites", "resid_pre,head_out"], capsys)
    assert all(row["max_abs_diff"] < 1e-4 for row in out["exact"].values())


def test_tracing_benchmark(capsys):
    out = _run(benchmarks.tracing, ["--model", "tiny-llama", "--samples", "2", "--kinds", "hidden,mlp"], capsys)
    assert out["max_abs_score_diff"] < 1e-4


def test_rome_benchmark(capsys):
    out = _run(benchmarks.rome, ["--model", "tiny-gpt2", "--tokens", "2048", "--layer", "1"], capsys)
    assert out["covariance_max_rel_diff"] < 1e-3


def test_saes_benchmark(capsys):
    """The block of ``--harvest-rows`` rows holds (seq_len − 1) tokens a row: this crashed when the
    benchmark asked the store for batches of rows × seq_len."""
    out = _run(benchmarks.saes, ["--model", "tiny-llama", "--layer", "1", "--d-sae", "128", "--k", "4",
                                 "--batch", "128", "--harvest-rows", "4", "--mfu", "--mfu-batches", "64",
                                 "--no-compile", "--cached-tokens", "512"], capsys)
    assert out["harvest"]["tokens"] == 4 * 128 and out["train_step_topk"][0]["ratio"] > 0
    assert {(r["arch"], r["batch"], r["mode"]) for r in out["trainer_steps"]["rows"]} == {("relu", 64, "default"), ("topk", 64, "default")}
    assert out["from_cache"]["from_cache_tok_s"] > 0


def test_sae_quality_benchmark(capsys, tmp_path):
    out = _run(benchmarks.sae_quality, ["--model", "tiny-llama", "--layer", "1", "--tokens", "512",
                                        "--sweep-tokens", "256", "--batch", "128", "--eval-tokens", "256",
                                        "--only", "topk", "--cache", str(tmp_path / "cache"),
                                        "--out", str(tmp_path / "runs")], capsys)
    assert out["main"]["eval"]["tokens"] > 0 and len(out["tradeoff"]) == 4


def test_sae_efficiency_benchmark(capsys, tmp_path):
    """The workbench side alone (SAELens needs its own environment): one run per budget, each scored on
    the held-out block past the longest run's blocks."""
    out = _run(benchmarks.sae_efficiency, ["--model", "tiny-llama", "--layer", "1", "--d-sae", "64", "--k", "4",
                                           "--batch", "1024", "--budgets", "2048,40000", "--lrs", "auto",
                                           "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "runs"),
                                           "--html", str(tmp_path / "fvu.html")], capsys)
    (run,) = out["runs"]
    assert (tmp_path / "fvu.html").stat().st_size > 0
    assert run["lr"] == pytest.approx(2e-4 * 16) and [p["tokens"] for p in run["points"]] == [2048, 39936]
    assert out["held_out"]["block"] == 2 and all(0 < p["fvu"] < 2 and p["l0"] <= 4 for p in run["points"])


def test_features_benchmark(capsys, tmp_path):
    import torch

    from saes import SAEConfig, make_sae, save_sae

    torch.manual_seed(0)
    save_sae(make_sae(SAEConfig("topk", 64, 48, k=4, hook_name="blocks.1.hook_resid_post", model_name="tiny-llama")),
             tmp_path / "sae")
    out = _run(benchmarks.features, ["--model", "tiny-llama", "--sae", str(tmp_path / "sae"), "--tokens", "512",
                                     "--rounds", "1", "--store", str(tmp_path / "store"), "--build-tokens", "3000",
                                     "--ctx", "32", "--features", "2", "--corpus", "bbc-news"], capsys)
    assert out["extraction"]["extract_over_harvest"] > 0 and out["build"]["tokens"] >= 3000
    q = out["queries"]
    assert q["tokens"] == out["build"]["tokens"] and len(q["features"]) == 2 and q["bytes_per_token"] > 0


def test_relations_benchmark(capsys):
    out = _run(benchmarks.relations, ["--model", "tiny-llama", "--layer", "1", "--n", "2", "--repeats", "1"], capsys)
    assert out["jacobian"]["relative_diff"] < 1e-4 and out["jacobian"]["speedup"] > 0
    assert out["one_lre"]["n"] == 2 and len(out["one_lre"]["seconds"]) == 1


def test_gcg_benchmark_without_the_peer(capsys):
    out = _run(benchmarks.gcg, ["--model", "tiny-llama", "--steps", "2", "--search-width", "8", "--topk", "8",
                                "--init", "x x", "--repeats", "1", "--no-peer"], capsys)
    run = out["runs"]["workbench"][0]
    assert len(run["losses"]) == 2 and run["losses"][1] <= run["losses"][0] and not out["runs"]["nanogcg"]


def test_explorer_start_benchmark(capsys):
    if chromium_path() is None:
        pytest.skip("chromium is not installed (the README's test command installs it)")
    out = _run(benchmarks.explorer_start, ["--model", "tiny-llama", "--delays", "0", "--repeats", "1", "--no-warmup"],
               capsys)
    row = out["by_delay"]["0s"]
    for side in ("streamlit_run", "interp_app"):
        t = {k: v["median_s"] for k, v in row[side].items()}
        assert 0 < t["listen_s"] < t["first_page_from_start_s"]
        assert t["first_page_from_visit_s"] <= t["first_page_from_start_s"]
    assert row["streamlit_run_over_interp_app_from_visit"]["median"] > 0


def test_transcoders_benchmark(capsys):
    out = _run(benchmarks.transcoders, ["--model", "tiny-llama", "--layers", "0-2", "--repeats", "1", "--d-sae", "128",
                                        "--k", "4", "--batch-size", "256"], capsys)
    assert out["hooks"] == 6 and out["ratios"]["harvest_over_bare_forward"]["median"] > 0


@pytest.fixture(scope="module")
def tiny_transcoders(tmp_path_factory):
    from interp.models import load_model
    from saes.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tc") / "set"
    train(load_model("tiny-llama"), TrainConfig(hook="blocks.{l}.hook_resid_mid", hook_out="blocks.{l}.hook_mlp_out",
                                                layers=[0, 1, 2], d_sae=64, k=4, tokens=1024, batch_size=256,
                                                corpus="bbc-news", lr=1e-3), out)
    return str(out)


def test_graph_benchmark(capsys, tiny_transcoders):
    out = _run(benchmarks.graph, ["--model", "tiny-llama", "--transcoders", tiny_transcoders, "--repeats", "1",
                                  "--cap", "32", "--batch", "8", "--memory-seconds", "30"], capsys)
    assert out["max_adjacency_difference"] < 1e-4 and out["ratios"]["batched_over_naive"]["median"] > 0
    assert out["full_graph"]["exactness_max_error"] < 1e-3
    est = out["estimates"]  # each run against its own estimate, time and memory
    assert set(est) == {"short", "medium", "long"} and est["short"]["tokens"] <= 10 < est["long"]["tokens"]
    for name in est:
        run = est[name]["runs"][0]
        assert "error" not in run and run["seconds"] > 0 and run["estimated_seconds"] > 0 and run["peak_gb"] >= 0
        assert est[name]["time_ratio"][0] > 0


def test_the_circuit_tracer_comparison_refuses_topk_and_compares_node_for_node(capsys, tiny_transcoders):
    """Its run needs circuit-tracer's own environment (not in CI): here, the TopK refusal and the
    comparison against a graph laid out as circuit-tracer lays it out (a permutation of our features)."""
    import numpy as np

    import benchmarks.circuit_tracer_compat as compat
    from interp.circuits.graph import attribution_graph
    from interp.models import load_model
    from saes.transcoder import load_set

    import benchmarks.graph_peer as peer

    with pytest.raises(SystemExit, match="no TopK"):
        compat.main(["--model", "tiny-llama", "--transcoders", tiny_transcoders, "--python", __file__])
    with pytest.raises(SystemExit, match="no TopK"):  # the speed comparison beside it (benchmarks/graph_peer.py)
        peer.main(["--model", "tiny-llama", "--transcoders", tiny_transcoders, "--python", __file__])
    model = load_model("tiny-llama")
    g = attribution_graph(model, load_set(tiny_transcoders), "The Eiffel Tower is in the city of",
                          label_features=False)
    perm = np.random.default_rng(0).permutation(g.n_features)
    order = np.r_[perm, np.arange(g.n_features, g.n_nodes)]
    ct = {"active": g.features[perm], "selected": np.arange(g.n_features), "acts": g.activations[perm],
          "adjacency": g.adjacency[np.ix_(order, order)], "logit_ids": np.array(g.logit_tokens)}
    same = compat._compare(g, ct)
    assert same["active_features"]["common"] == g.n_features and same["max_edge_difference"] == 0
    assert same["max_activation_difference"] == 0 and same["logits_equal"]
    ct["adjacency"] = ct["adjacency"].copy()
    ct["adjacency"][g.logit_slice.start, 0] += 1.0
    assert compat._compare(g, ct)["max_edge_difference"] == pytest.approx(1.0)


def test_graph_quality_benchmark(capsys, tiny_transcoders, tiny_models, tmp_path):
    from saes.clt import save_circuit_tracer_clt
    from tests.test_clt import random_clt

    clt = save_circuit_tracer_clt(random_clt(tiny_models["tiny-llama"], seed=5), tmp_path / "clt")
    out = _run(benchmarks.graph_quality, ["--model", "tiny-llama", "--transcoders", tiny_transcoders, str(clt),
                                          "--prompts", "2", "--top", "4", "--trace-samples", "2"], capsys)
    assert len(out["prompts"]) == 2 and "ablation_r_pooled" in out["mean"]
    assert [s["kind"] for s in out["sets"]] == ["per-layer", "clt"] and out["sets"][0]["mean"] == out["mean"]
    assert 0 <= out["sets"][1]["mean"]["completeness"] <= 1 and len(out["sets"][1]["prompts"]) == 2
