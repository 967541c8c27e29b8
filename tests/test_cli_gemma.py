"""Every `interp` verb on `tiny-gemma3` (sandwich norms, QK-norm, sliding windows, one KV head, BOS):
the JSON contract holds and each result is the right shape for the architecture. The numbers
themselves are checked against references by the family-matrix unit tests."""

import pytest

from tests.conftest import EIFFEL
from tests.test_cli import COLOSSEUM, run_json

G = ("--model", "tiny-gemma3")
PAIR = ["--clean", EIFFEL, "--corrupt", COLOSSEUM, "--answer", " Paris", "--wrong", " Rome"]


def test_the_analysis_verbs_run_on_gemma3(tmp_path):
    names = {m["name"]: m for m in run_json("models")["models"]}
    assert {"tiny-gemma3", "gemma3-270m"} <= set(names) and "Gemma" in names["gemma3-270m"]["licence"]
    att = run_json("attention", *G, "--prompt", EIFFEL, "--layer", "0", "--html", str(tmp_path / "a.html"))
    assert att["tokens"][0] == "<|im_start|>" and len(att["pattern"][0]) == 4  # BOS, and four query heads
    assert att["windows"] == [4]  # layer 0 is a sliding-window layer
    row = att["pattern"][0][0][-1]  # the last query of a window-4 layer sees its last 4 keys only
    assert all(v == 0 for v in row[:-4]) and sum(row[-4:]) == pytest.approx(1, abs=1e-4)
    assert run_json("heads", *G, "--n-seqs", "2", "--seq-len", "12")["top"]
    lens = run_json("lens", *G, "--prompt", EIFFEL, "--answer", " Paris", "--wrong", " Rome")
    assert lens["dla"]["sum_of_parts"] == pytest.approx(lens["dla"]["logit_diff"], abs=1e-3)
    for site in ("resid_pre", "head_out"):
        assert run_json("patch", *G, *PAIR, "--site", site)["clean_baseline"] is not None
    assert run_json("patch", *G, *PAIR, "--site", "attn_out", "--method", "attribution")["method"] == "attribution"
    assert run_json("path-patch", *G, *PAIR)["values"]
    assert run_json("circuit", *G, *PAIR, "--edges", "20")["n_edges"] == 20
    tr = run_json("trace", *G, "--prompt", EIFFEL, "--subject", "Eiffel Tower", "--samples", "2")
    assert tr["subject_range"] == [2, 5] and len(tr["scores"]["mlp"][0]) == 3
    w = run_json("weights", *G, "--stat", "ov", "--layer", "1", "--head", "3")
    assert w["head"] == 3 and w["singular_values"]
    assert run_json("weights", *G, "--stat", "composition", "--top", "3")


def test_the_knowledge_and_representation_verbs_run_on_gemma3(tmp_path):
    cache = {"INTERP_CACHE": str(tmp_path / "cache")}
    edit = run_json("edit", *G, "--prompt", "{} is located in the city of", "--subject", "The Eiffel Tower",
                    "--target", " Rome", "--layer", "1", "--cov-tokens", "1024", "--corpus", "bbc-news",
                    "--steps", "3", "--max-new-tokens", "4", env=cache)
    assert edit["edit"]["layer"] == 1 and edit["edit"]["key_residual"] < 1e-3
    probe = run_json("probe", *G, "--dataset", "sentiment", "--layers", "0,2", "--folds", "3")
    assert probe["layers"] == [0, 2]
    steer = run_json("steer", *G, "--layer", "1", "--alphas=-2,0,2", "--prompt", "The movie", "--max-new-tokens", "3")
    assert steer["alphas"] == [-2.0, 0.0, 2.0]
    rel = run_json("relation", *G, "--dataset", "country_capital", "--layer", "1", "--n", "2", "--rank", "8")
    assert rel["layers"] == [1]
    gcg = run_json("gcg", *G, "--prompt", "The cat", "--target", " sat", "--steps", "2", "--search-width", "8",
                   "--topk", "8", "--init", " x x")
    assert "best_suffix" in gcg


def test_the_sae_transcoder_and_graph_verbs_run_on_gemma3(tmp_path):
    base = ("sae", "train", *G, "--corpus", "bbc-news", "--tokens", "1024", "--batch-size", "256")
    sae = run_json(*base, "--hook", "blocks.1.hook_resid_post", "--arch", "topk", "--k", "4", "--d-sae", "64",
                   "--out", str(tmp_path / "sae"))
    assert sae["d_in"] == 64 and sae["steps"] == 4
    ev = run_json("sae", "eval", str(tmp_path / "sae"), *G, "--corpus", "bbc-news", "--tokens", "512")
    assert "ce_loss_recovered" in ev
    store = str(tmp_path / "store")
    ex = run_json("sae", "extract", str(tmp_path / "sae"), *G, "--corpus", "bbc-news", "--tokens", "2000", "--ctx",
                  "32", "--contexts-per-shard", "16", "--out", store)
    assert ex["tokens"] >= 2000
    assert run_json("sae", "top", store, "--feature", "3", "--k", "2")["feature"] == 3
    assert run_json("sae", "dashboard", store, "--feature", "3")["feature"] == 3
    found = run_json("sae", "search", store, "--token", " the", "--top", "2")["features"]
    assert run_json("sae", "export", store, "--out", str(tmp_path / "np"), "--batch", "32")["features"] == 64
    fired = found[0]["feature"]  # fires on ' the', so it has contexts to explain
    explained = run_json("sae", "explain", store, *G, "--feature", str(fired), "--examples", "4", "--held-out", "4")
    assert explained["explanation"] and explained["explainer"] == "tiny-gemma3"
    act = run_json("sae", "active", str(tmp_path / "sae"), *G, "--text", "The cat sat", "--top", "2")
    assert act["tokens"][0] == "The" and act["skipped"][0] == 0  # BOS is the sink: read, never shown
    st = run_json("sae", "steer", str(tmp_path / "sae"), *G, "--feature", "3", "--scale", "4", "--max-act", "1",
                  "--prompt", "The cat", "--max-new-tokens", "3")
    assert len(st["after"]) == 1
    # Transcoders read Gemma's normed MLP input (Gemma Scope 2's hook) and predict the post-norm output.
    tc = run_json(*base, "--transcoder", "--layers", "0-2", "--d-sae", "64", "--k", "4", "--out", str(tmp_path / "set"))
    assert tc["hook"] == "blocks.{l}.ln2.hook_out" and tc["hook_out"] == "blocks.{l}.hook_mlp_out"
    graph = run_json("graph", *G, "--transcoders", str(tmp_path / "set"), "--prompt", EIFFEL,
                     "--out", str(tmp_path / "g.json"))
    assert graph["exactness_max_error"] < 1e-4 and graph["nodes_pruned"] <= graph["nodes"]
    assert run_json("graph", "--read", str(tmp_path / "g.json"))["nodes"] > 0
