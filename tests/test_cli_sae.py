"""`interp sae extract/top/search/dashboard/export/active/steer/explain` on a tiny model, through
``interp.cli.main`` as `python -m interp` runs it (tests/test_cli.py checks that the two agree)."""

import gzip
import json

import pytest

from tests.test_cli import assert_one_line_error, run_json

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import torch

    from saes import SAEConfig, make_sae, save_sae

    root = tmp_path_factory.mktemp("clisae")
    torch.manual_seed(0)
    save_sae(make_sae(SAEConfig("topk", 64, 48, k=4, hook_name=HOOK, model_name="tiny-llama")), root / "sae")
    out = run_json("sae", "extract", str(root / "sae"), "--model", "tiny-llama", "--corpus", "bbc-news",
                   "--tokens", "3000", "--ctx", "32", "--contexts-per-shard", "16", "--out", str(root / "store"))
    assert out["tokens"] >= 3000 and out["shards"] == out["shards_written"] and out["saes"] == ["sae"]
    return root


def test_store_verbs_read_without_a_model(store):
    s = str(store / "store")
    top = run_json("sae", "top", s, "--feature", "3", "--k", "4", "--window", "5")
    assert len(top["contexts"]) == 4 and all(len(c["tokens"]) <= 11 for c in top["contexts"])
    assert [c["max_value"] for c in top["contexts"]] == sorted((c["max_value"] for c in top["contexts"]), reverse=True)
    found = run_json("sae", "search", s, "--token", " the", "--top", "3")
    assert found["occurrences"] > 10 and len(found["features"]) == 3
    dash = run_json("sae", "dashboard", s, "--feature", "3", "--html", str(store / "f3.html"))
    assert dash["fires"] > 0 and len(dash["top_logits"]) == 10 and len(dash["neighbours"]) == 10
    page = (store / "f3.html").read_text()
    assert "<script" not in page and "feature 3" in page and "<svg" in page
    exp = run_json("sae", "export", s, "--out", str(store / "np"), "--batch", "16")
    assert exp["features"] == 48 and exp["batches"] == 3
    with gzip.open(f"{exp['out']}/features/batch-0.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert first["index"] == "0" and {"pos_str", "freq_hist_data_bar_heights", "maxActApprox"} <= set(first)


def test_model_verbs_active_steer_explain(store):
    s, sae = str(store / "store"), str(store / "sae")
    act = run_json("sae", "active", sae, "--model", "tiny-llama", "--text", "The cat sat on the mat", "--top", "3")
    assert len(act["features"]) == len(act["tokens"]) and act["skipped"][0] == 1 and act["features"][0] == []
    steer = run_json("sae", "steer", sae, "--model", "tiny-llama", "--feature", "3", "--scale", "20", "--store", s,
                     "--prompt", "The cat", "--max-new-tokens", "4")
    assert steer["value"] == pytest.approx(20 * steer["max_activation"]) and len(steer["after"]) == 1
    ex = run_json("sae", "explain", s, "--model", "tiny-llama", "--feature", "3", "--examples", "4",
                  "--held-out", "4")
    assert ex["explanation"] and 0 <= ex["detection"]["balanced_accuracy"] <= 1 and ex["explainer"] == "tiny-llama"
    dash = run_json("sae", "dashboard", s, "--feature", "3")
    assert dash["explanations"][0]["explanation"] == ex["explanation"]


@pytest.mark.parametrize("args,message", [
    (["top", "{s}", "--feature", "48"], "feature 48 is out of range"),
    (["top", "{root}", "--feature", "1"], "is not a feature store"),
    (["search", "{s}", "--token", "zzqqzz"], "no token in the vocabulary"),
    (["extract", "{sae}", "--model", "tiny-llama", "--out", "{root}/x", "--ctx", "1"], "--ctx must be at least 2"),
    (["extract", "{sae}", "--model", "tiny-gpt2", "--out", "{s}", "--corpus", "bbc-news"], "not on 'tiny-gpt2'"),
    (["steer", "{sae}", "--model", "tiny-llama", "--feature", "1", "--scale", "nan", "--max-act", "1",
      "--prompt", "x"], "--scale must be a finite number"),
    (["steer", "{sae}", "--model", "tiny-llama", "--feature", "1", "--scale", "2", "--prompt", "x"], "--max-act"),
    (["explain", "{s}", "--feature", "3", "--explainer", "no-such-org/no-such-model"], "no-such-org/no-such-model"),
])
def test_bad_input_is_one_line(store, args, message):
    fill = {"s": str(store / "store"), "sae": str(store / "sae"), "root": str(store)}
    assert_one_line_error("sae", *[a.format(**fill) for a in args], message=message)


def test_store_verbs_never_import_torch(store):
    """A store carries its vocabulary, so reading one needs neither the model nor torch (3.5 s -> 1.1 s a call)."""
    import os
    import subprocess
    import sys

    code = ("import sys; from interp.cli import main\n"
            f"main(['sae', 'dashboard', {str(store / 'store')!r}, '--feature', '3', '--json'])\n"
            f"main(['sae', 'search', {str(store / 'store')!r}, '--token', ' the', '--json'])\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
