"""What a researcher new to the workbench ran into: checks that must come before the expensive work,
results that were silent or misleading, mistakes that gave internal errors, and small output and doc
mismatches. Each test fails on the behaviour first seen, and a refusal proves it came before the
model loaded by making a model load fail the test."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from tests.test_cli import assert_one_line_error, run_in_process, run_json

HOOK = "blocks.1.hook_resid_post"


@contextlib.contextmanager
def no_model():
    """Any model load fails the test: a refusal inside must come before it."""
    def boom(*args, **kwargs):
        raise AssertionError("the model loaded before the refusal")
    with mock.patch("interp.models.load_model", boom):
        yield


def refused_before_loading(*args, message):
    with no_model():
        assert_one_line_error(*args, message=message)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A TopK SAE on tiny-llama whose feature 0 can never fire, and its store over 3,000 tokens."""
    import torch

    from saes import SAEConfig, make_sae, save_sae

    root = tmp_path_factory.mktemp("firstuse")
    torch.manual_seed(0)
    sae = make_sae(SAEConfig("topk", 64, 48, k=4, hook_name=HOOK, model_name="tiny-llama"))
    with torch.no_grad():
        sae.W_enc[:, 0] = 0.0
        sae.b_enc[0] = -1e4
    save_sae(sae, root / "sae")
    run_json("sae", "extract", str(root / "sae"), "--model", "tiny-llama", "--corpus", "bbc-news",
             "--tokens", "3000", "--ctx", "32", "--contexts-per-shard", "16", "--out", str(root / "store"))
    return root


# --- Checks before the expensive work -------------------------------------------------------------

def test_edit_refuses_a_layer_out_of_range_before_any_generation(tiny_models, monkeypatch):
    from interp.errors import InterpError
    from interp.knowledge import counterfact

    def no_generation(*args, **kwargs):
        raise AssertionError("generated before checking the layer")
    monkeypatch.setattr(counterfact, "generate", no_generation)
    with pytest.raises(InterpError, match="layer 30 is out of range"):
        counterfact.edit_report(tiny_models["tiny-gpt2"], "{} is located in the city of", "The Eiffel Tower",
                                " Rome", layer=30)


def test_sae_train_refuses_another_runs_checkpoint_before_the_model_loads(tmp_path):
    import torch

    from saes.train import TrainConfig
    from saes.train_checkpoint import comparable

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"config": comparable(TrainConfig(hook=HOOK, k=16, tokens=8192))}, out / "checkpoint.pt")
    refused_before_loading("sae", "train", "--hook", HOOK, "--k", "32", "--tokens", "8192", "--out", str(out),
                           message="belongs to a different run (k differ)")
    assert (out / "checkpoint.pt").exists()  # nothing lost


@pytest.mark.parametrize("args, message", [
    (["sae", "extract", "{tmp}/no-sae", "--out", "{tmp}/st"], "is not an SAE directory: it does not exist"),
    (["sae", "eval", "{tmp}/no-sae"], "is not an SAE directory: it does not exist"),
    (["sae", "active", "{tmp}/no-sae", "--text", "hi"], "is not an SAE directory"),
    (["sae", "extract", "{sae}", "--out", "{tmp}/st", "--corpus", "{tmp}/missing.txt"], "does not exist"),
    (["sae", "train", "--hook", HOOK, "--out", "{tmp}/t", "--corpus", "{tmp}/missing.jsonl"], "does not exist"),
    (["edit", "--prompt", "{{}} is in", "--subject", "Paris", "--target", " Rome", "--corpus", "{tmp}/gone.txt"],
     "does not exist"),
    (["sae", "extract", "{sae}", "--out", "{tmp}/st", "--ctx", "1"], "--ctx must be at least 2"),
])
def test_missing_inputs_are_refused_before_the_model_loads(store, tmp_path, args, message):
    fill = {"tmp": str(tmp_path), "sae": str(store / "sae")}
    refused_before_loading(*[a.format(**fill) for a in args], message=message)
    assert not (tmp_path / "st").exists() and not (tmp_path / "t").exists()


def test_a_bad_ctx_is_refused_without_importing_torch(tmp_path):
    """--ctx 1 took 8.7 s to refuse on a busy machine, nearly all of it importing torch and the store."""
    import subprocess

    code = ("import sys; from interp.cli import main\n"
            f"rc = main(['sae', 'extract', 'x', '--out', {str(tmp_path / 'st')!r}, '--ctx', '1'])\n"
            "print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"] and "--ctx must be at least 2" in proc.stderr


# --- Silent or misleading results -----------------------------------------------------------------

def test_sae_train_into_a_feature_store_is_refused(store):
    before = sorted(p.name for p in (store / "store").iterdir())
    refused_before_loading("sae", "train", "--hook", HOOK, "--out", str(store / "store"),
                           message="is a feature store")
    assert sorted(p.name for p in (store / "store").iterdir()) == before


def test_search_says_a_token_occurs_only_where_it_is_not_encoded(store):
    from saes.features.store import FeatureStore

    st = FeatureStore(store / "store")
    rows = st._sql("SELECT token, max(skipped) AS hi, min(skipped) AS lo FROM {tokens} GROUP BY token "
                   "HAVING min(skipped) = 1 ORDER BY token LIMIT 1", None)
    assert rows, "every context starts on a token that also occurs inside a context"
    token = st.vocab[rows[0]["token"]]
    assert_one_line_error("sae", "search", str(store / "store"), "--token", token,
                          message="occurs in this store only where it is not encoded")


def test_wilson_interval_stays_honest_at_small_n():
    from saes.features.autointerp import _score, wilson_interval

    lo, hi = wilson_interval(0, 10)  # the textbook value: 0 of 10 gives [0, 0.2775]
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-4)
    lo, hi = wilson_interval(7, 10)
    assert (lo, hi) == (pytest.approx(0.3968, abs=1e-4), pytest.approx(0.8922, abs=1e-4))
    s = _score([1.0, -1.0], [True, False])  # 1 + 1 contexts, both right: no longer [0.5, 0.5] or [1, 1]
    assert s.balanced_accuracy == 1.0 and s.high - s.low > 0.5 and (s.n_positive, s.n_negative) == (1, 1)


def test_explain_warns_on_few_contexts_and_on_the_default_scorer(store):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    code, out, err = run_in_process("sae", "explain", str(store / "store"), "--feature", "3", "--model", "tiny-llama",
                                    "--scorer", "smollm2-135m", "--explanation", "the", "--held-out", "2", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert "scored on only" in err and "held-out contexts" in err
    assert "cannot tell a right explanation from a wrong one" in err and res["warning"]
    assert not hf_logging.is_progress_bar_enabled()  # transformers' "Loading weights" bar is off
    from saes.features.store import FeatureStore

    stored = FeatureStore(store / "store").explanations(3)[0]
    assert stored["warning"] == res["warning"]  # kept with the explanation, for the dashboard


@pytest.mark.parametrize("args, message", [
    (["--scale", "-4", "--max-act", "1"], "this SAE's features are never negative"),
    (["--scale", "2", "--max-act", "nan"], "--max-act must be a positive finite number"),
    (["--scale", "2", "--max-act", "1", "--positions", "99"], "--positions 99 is past the end of the prompt"),
])
def test_steer_refuses_what_it_used_to_run_silently(store, args, message):
    assert_one_line_error("sae", "steer", str(store / "sae"), "--model", "tiny-llama", "--feature", "3",
                          "--prompt", "The cat sat on", *args, message=message)


def test_blank_texts_are_refused(store):
    assert_one_line_error("sae", "active", str(store / "sae"), "--model", "tiny-llama", "--text", "   ",
                          message="--text is empty")
    assert_one_line_error("gcg", "--model", "tiny-llama", "--prompt", "   ", "--target", " x",
                          message="is blank")
    assert_one_line_error("trace", "--model", "tiny-llama", "--prompt", "", "--subject", "x",
                          message="--prompt is empty")


def test_top_of_a_feature_that_never_fired_says_so(store):
    code, out, err = run_in_process("sae", "top", str(store / "store"), "--feature", "0")
    assert code == 0 and "feature 0 never fired" in out


def test_training_fewer_tokens_than_a_batch_warns(tmp_path, capsys):
    from saes.train import TrainConfig, check_train_out

    check_train_out(TrainConfig(hook=HOOK, tokens=100), tmp_path / "run")
    assert "less than one batch: training takes 1 step of --batch-size 4,096 tokens" in capsys.readouterr().err


def test_an_edit_that_misses_its_target_warns(monkeypatch):
    from interp.knowledge import counterfact

    fake = counterfact.EditReport(
        SimpleNamespace(layer=1, summary=lambda: {"layer": 1}), "{} is in", "Paris", " Rome", " France", [], [],
        {"before": [], "after": []},
        {"before": {"target": 0.003, "previous_answer": 0.4}, "after": {"target": 0.007, "previous_answer": 0.3}},
        0.1)
    monkeypatch.setattr(counterfact, "edit_report", lambda *a, **k: fake)
    code, out, err = run_in_process("edit", "--model", "tiny-gpt2", "--prompt", "{} is in", "--subject", "Paris",
                                    "--target", " Rome", "--json")
    assert code == 0 and json.loads(out)["reached"] is False
    assert "did not reach its target: P(' Rome') 0.003 -> 0.007" in err


# --- Output and docs -------------------------------------------------------------------------------

def test_nested_progress_bars_write_plain_lines_to_a_log(monkeypatch):
    from interp import progress as P

    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    monkeypatch.setattr(P, "PLAIN_EVERY", 0)
    for _ in P.progress(range(2), desc="outer"):
        for _ in P.progress(range(2), desc="inner", leave=False):
            pass
    assert "inner: 2/2" in buf.getvalue() and "\x1b" not in buf.getvalue()


def test_a_hook_typo_gets_a_suggestion(tmp_path):
    assert_one_line_error("sae", "train", "--model", "tiny-llama", "--hook", "blocks.1.hook_resid_pots",
                          "--tokens", "256", "--batch-size", "128", "--corpus", "bbc-news", "--out", str(tmp_path / "t"),
                          message="did you mean blocks.1.hook_resid_post")
    assert not (tmp_path / "t").exists()


def test_a_store_given_for_an_sae_directory_says_so(store):
    refused_before_loading("sae", "active", str(store / "store"), "--text", "hi", message="is a feature store")


def test_an_unknown_flag_names_the_verb_once():
    code, out, err = run_in_process("lens", "--prompt", "x", "--bogus")
    assert code == 2 and err.strip() == "interp: error: lens: unrecognized arguments: --bogus (see interp lens --help)"


def test_active_shows_characters_split_over_byte_tokens(tiny_models):
    from interp.tokens import joined_text, str_tokens

    tokens = str_tokens(tiny_models["tiny-llama"], "I love 日本 🙂")
    assert any("\\x" in t for t in tokens)  # the tokenizer splits them into bytes
    text = joined_text(tokens)
    assert "日" in "".join(text) and "🙂" in "".join(text) and not any("\\x" in t for t in text)
    assert len(text) == len(tokens)


def test_windowed_contexts_keep_their_document_offset(store):
    from saes.features.store import FeatureStore

    st = FeatureStore(store / "store")
    whole = {c.context: c for c in st.top_contexts(3, 5)}
    for c in st.top_contexts(3, 5, window=2):
        w = whole[c.context]
        assert c.doc_offset == w.doc_offset and c.window_start + c.max_position == w.max_position
        assert c.tokens == w.tokens[c.window_start:c.window_start + len(c.tokens)]


def test_neuronpedia_export_names_layers_and_real_prompt_length(store, tmp_path):
    from saes.features.store import FeatureStore

    exp = run_json("sae", "export", str(store / "store"), "--out", str(tmp_path / "np"))
    model = json.loads(Path(exp["out"], "model.jsonl").read_text().splitlines()[0])
    source = json.loads(Path(exp["out"], "source.jsonl").read_text().splitlines()[0])
    st = FeatureStore(store / "store")
    longest = max(len(c.tokens) for c in st.top_contexts(3, 1000))
    assert model["layers"] == 3 and source["num_tokens_in_prompt"] == longest
    with gzip.open(Path(exp["out"], "features", "batch-0.jsonl.gz"), "rt") as f:
        assert json.loads(f.readline())["index"] == "0"


def test_dashboard_histograms_label_their_y_axis(store, tmp_path):
    from saes.features.dashboard import feature_dashboard
    from saes.features.store import FeatureStore

    d = feature_dashboard(FeatureStore(store / "store"), 3)
    fig = d.figure()
    assert fig.layout.yaxis.title.text == "tokens (where it fires)"
    assert "tokens where it fires (top bar" in d.html()


def test_extract_summary_says_how_a_txt_corpus_splits_into_documents(tmp_path, store):
    corpus = tmp_path / "lines.txt"
    corpus.write_text("".join(f"Sentence number {i} is about the weather in town.\n" for i in range(40)))
    code, out, err = run_in_process("sae", "extract", str(store / "sae"), "--model", "tiny-llama", "--corpus",
                                    str(corpus), "--ctx", "32", "--out", str(tmp_path / "st"))
    assert code == 0, err
    assert "1 document (blank lines separate documents in .txt)" in out


def test_rerunning_a_finished_extraction_rebuilds_nothing(store, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store / "store", copy)
    before = (copy / "features").stat().st_mtime_ns, sorted(p.name for p in (copy / "features").iterdir())

    def no_rebuild(*args, **kwargs):
        raise AssertionError("feature tables rebuilt although nothing was written")
    monkeypatch.setattr("saes.features.stats.write_feature_tables", no_rebuild)
    out = run_json("sae", "extract", str(store / "sae"), "--model", "tiny-llama", "--corpus", "bbc-news",
                   "--tokens", "3000", "--ctx", "32", "--contexts-per-shard", "16", "--out", str(copy))
    assert out["shards_written"] == 0
    assert sorted(p.name for p in (copy / "features").iterdir()) == before[1]


# --- Mistakes that were internal errors --------------------------------------------------------------

def test_corpus_mistakes_name_the_file_and_line(tmp_path, capsys):
    from interp.corpus import documents
    from interp.errors import InterpError

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(InterpError, match=r"latin.jsonl line 2 is not UTF-8 \(byte 0xe9"):
        list(documents(str(latin)))
    for bad, kind in (("3", "int"), ("null", "NoneType"), ('["a"]', "list")):
        path = tmp_path / f"bad-{kind}.jsonl"
        path.write_text('{"text": "ok"}\n{"text": ' + bad + "}\n")
        with pytest.raises(InterpError, match=rf"line 2: 'text' is {kind} .*not a string"):
            list(documents(str(path)))
    txt = tmp_path / "latin.txt"
    txt.write_bytes(b"caf\xe9 au lait\n\nsecond document\n")
    docs = list(documents(str(txt)))
    assert docs == ["caf\ufffd au lait", "second document"]
    assert "is not UTF-8" in capsys.readouterr().err  # said, not silent


@pytest.mark.parametrize("verb", [
    ["sae", "export", "{store}", "--out", "{file}"],
    ["sae", "top", "{file}", "--feature", "1"],
    ["sae", "extract", "{sae}", "--out", "{file}"],
    ["sae", "train", "--hook", HOOK, "--out", "{file}"],
])
def test_a_file_where_a_directory_belongs_is_one_line(store, tmp_path, verb):
    f = tmp_path / "taken"
    f.write_text("keep me")
    with no_model():
        assert_one_line_error(*[a.format(store=store / "store", sae=store / "sae", file=f) for a in verb],
                              message="is a file")
    assert f.read_text() == "keep me"


def test_a_second_extraction_into_a_store_being_written_is_refused(store, tmp_path):
    import json as _json
    import socket

    out = tmp_path / "busy"
    out.mkdir()
    (out / ".extract.lock").write_text(_json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                                     "started": "2026-12-02 09:00:00"}))
    refused_before_loading("sae", "extract", str(store / "sae"), "--out", str(out),
                           message=f"another extraction is writing {out} now (process {os.getppid()}")
    (out / ".extract.lock").write_text(_json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname(),
                                                     "started": "2026-12-02 09:00:00"}))
    res = run_json("sae", "extract", str(store / "sae"), "--model", "tiny-llama", "--corpus", "bbc-news",
                   "--tokens", "500", "--ctx", "32", "--out", str(out))  # a stale lock (its process gone) is taken
    assert res["tokens"] >= 500 and not (out / ".extract.lock").exists()


# --- Long work says so first ----------------------------------------------------------------------

def test_a_trace_too_long_to_finish_is_refused_before_any_work(monkeypatch):
    from interp.knowledge import tracing

    def no_work(*args, **kwargs):
        raise AssertionError("the trace started")
    monkeypatch.setattr(tracing, "_prepare", no_work)
    assert_one_line_error("trace", "--model", "tiny-llama", "--prompt", "word " * 3000, "--subject", "word",
                          message="the prompt has 3,001 tokens; its trace would run")


def test_relation_sweeps_the_readme_layers_by_default_and_estimates_first(monkeypatch):
    from interp import progress as P
    from interp.knowledge.relations import default_layers

    assert default_layers(30) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29]
    assert default_layers(3) == [0, 2]
    monkeypatch.setattr(P, "ESTIMATE_OVER", 0.0)  # a tiny model's sweep is quick: say it anyway
    code, out, err = run_in_process("relation", "--model", "tiny-llama", "--dataset", "country_capital",
                                    "--n", "2", "--rank", "8", "--json")
    assert code == 0, err
    assert json.loads(out)["layers"] == [0, 2]
    estimate = [l for l in err.splitlines() if l.startswith("interp: estimate: LRE sweep of country_capital")]
    assert len(estimate) == 1 and "for 2 layers" in estimate[0]
    code, out, err = run_in_process("relation", "--model", "tiny-llama", "--dataset", "country_capital",
                                    "--n", "2", "--rank", "8", "--layers", "all", "--json")
    assert code == 0 and json.loads(out)["layers"] == [0, 1, 2]


def test_an_estimate_is_one_line_from_the_first_unit(monkeypatch, capsys):
    from interp import progress as P

    ticks = [100.0, 112.0]
    monkeypatch.setattr("time.perf_counter", lambda: ticks.pop(0) if len(ticks) > 1 else ticks[0])
    est = P.Estimate("job", 20, "steps", "fewer with --tokens")
    est.done(2)  # 12 s for 2 of 20 steps: 2 min in all
    est.done(3)
    assert capsys.readouterr().err == ("interp: estimate: job: about 2.0 min for 20 steps (the first 2 took 12 s); "
                                       "fewer with --tokens\n")
    assert est.seconds == pytest.approx(120.0)


def test_an_estimate_after_a_warmup_extrapolates_from_the_next_unit_and_adds_what_follows(monkeypatch, capsys):
    from interp import progress as P

    ticks = [100.0, 130.0, 136.0]  # the start; a first block of 30 s (one-time costs); a second of 6 s
    monkeypatch.setattr("time.perf_counter", lambda: ticks.pop(0) if len(ticks) > 1 else ticks[0])
    est = P.Estimate("graph", 10, "blocks", warmup=True, after=lambda: 20.0, after_what="prune")
    est.done(1)
    assert capsys.readouterr().err == "" and est.seconds is None
    est.done(1)  # 36 s so far, 8 more blocks at 6 s, then 20 s after: 104 s
    assert est.seconds == pytest.approx(104.0) and est.after_seconds == 20.0
    assert capsys.readouterr().err == ("interp: estimate: graph: about 1.7 min in all: 84 s for 10 blocks (the first "
                                       "took 30 s, the next 6 s), then 20 s to prune\n")


def test_models_says_it_counts_the_corpora_once(monkeypatch, tmp_path, capsys):
    from interp.corpus import SOURCES, describe_corpora

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))

    def words(docs, add_special_tokens=False):  # a whitespace "tokenizer": the counts, not their values, matter
        return {"input_ids": [d.split() for d in docs]}
    rows = describe_corpora(lambda: words, "words")
    assert "counting the shipped corpora's tokens, once" in capsys.readouterr().err
    by = {r["name"]: r for r in rows}
    assert rows[0]["name"] == "default"
    assert by["default"]["tokens"] == sum(by[s]["tokens"] for s in SOURCES)  # one pass, not two
    describe_corpora(lambda: words, "words")
    assert "counting" not in capsys.readouterr().err  # cached


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only file system (a tmpfs mounted read-only): permissions cannot fake it
    for root, which ignores them."""
    import subprocess

    path = tmp_path / "ro"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine cannot mount a read-only file system for the test")
    yield path
    subprocess.run(["umount", str(path)], capture_output=True)


@pytest.mark.parametrize("verb", [
    ["sae", "extract", "{sae}", "--out", "{ro}/store"],
    ["sae", "train", "--hook", HOOK, "--out", "{ro}/sae"],
    ["sae", "dashboard", "{store}", "--feature", "3", "--html", "{ro}/f3.html"],
    ["sae", "export", "{store}", "--out", "{ro}/np"],
])
def test_a_read_only_out_is_one_line_before_any_work(store, read_only_dir, verb):
    with no_model():
        assert_one_line_error(*[a.format(sae=store / "sae", store=store / "store", ro=read_only_dir) for a in verb],
                              message="the file system is read-only")
