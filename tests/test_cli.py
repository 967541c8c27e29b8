"""The `interp` command: its JSON contract and one-line errors, through ``interp.cli.main`` as
`python -m interp` runs it, with checks that a real process gives the same (exit code, output, and
the torch-free `interp models`)."""

import contextlib
import io
import json
import os
import subprocess
import sys
from unittest import mock

import pytest

from tests.conftest import EIFFEL


def run_process(*args, env=None):
    """``python -m interp ARGS`` in a real process: the exit code, stdout and stderr."""
    proc = subprocess.run([sys.executable, "-m", "interp", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def run_in_process(*args, env=None):
    """``interp.cli.main`` in this process, as ``python -m interp`` runs it: the exit code and what it
    wrote. A subprocess costs ~9 s of imports on 2 cores; the process path itself is tested once,
    in ``test_one_line_error_through_a_real_process``."""
    from interp.cli import main

    out, err = io.StringIO(), io.StringIO()
    # HF_HUB_OFFLINE as run_process() sets it for the subprocess
    with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1", **(env or {})}), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's errors
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(*args, message):
    """Bad input: exit 2, nothing on stdout, exactly one `interp:` line naming the problem."""
    code, out, err = run_in_process(*args, "--json")
    assert code == 2 and out == ""
    lines = [l for l in err.splitlines() if l.startswith("interp:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def run_json(*args, env=None):
    code, out, err = run_in_process(*args, "--json", env=env)
    assert code == 0, err
    return json.loads(out)


def test_one_line_error_through_a_real_process(monkeypatch):
    """The same bad input gives the same single line and exit status in a real `python -m interp`
    process as in :func:`run_in_process`, and no traceback."""
    args = ("lens", "--model", "tiny-llama", "--prompt", "", "--json")
    code, out, err = run_process(*args)
    assert (code, out) == (2, "") and err.count("interp:") == 1 and "Traceback" not in err
    assert run_in_process(*args) == (code, out, err)


def test_models_json():
    out = run_json("models")
    names = [m["name"] for m in out["models"]]
    assert out["default"] == "smollm2-135m" and {"smollm2-135m", "tiny-gpt2", "tiny-llama"} <= set(names)
    assert all({"name", "kind", "offline", "cached", "description"} <= set(m) for m in out["models"])
    assert isinstance(out["seconds"], float)


@pytest.mark.parametrize("fresh_cache", [False, True])
def test_models_verb_never_imports_torch(fresh_cache, tmp_path):
    """`interp models` is the first call a new user makes: it lists models and corpora without
    paying for torch (about 1.5-2.5 s of every other call), even on an empty cache, where it says
    the corpora are not counted yet instead of counting them."""
    code = ("import sys; from interp.cli import main\n"
            "try:\n    main(['models', '--json'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules), file=sys.stderr)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"INTERP_CACHE": str(tmp_path)} if fresh_cache else {})}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr
    corpora = json.loads(proc.stdout)["corpora"]
    if fresh_cache:
        assert not any(c["counted"] for c in corpora) and all(c["tokens"] is None for c in corpora)


def test_attention_json_and_html(tmp_path):
    html = tmp_path / "att.html"
    out = run_json("attention", "--model", "tiny-llama", "--prompt", EIFFEL, "--layer", "1",
                   "--html", str(html))
    assert out["axes"] == {"pattern": ["layer", "head", "query", "key"]}
    assert out["layers"] == [1] and len(out["heads"]) == 4 and len(out["tokens"]) == 10
    rows = out["pattern"][0][0]
    assert len(rows) == 10 and all(abs(sum(r) - 1) < 1e-3 for r in rows)
    assert html.read_text().count("plotly") > 0 and out["model"] == "tiny-llama"


def test_heads_and_lens_json_on_tiny_gpt2():
    heads = run_json("heads", "--model", "tiny-gpt2", "--detect", "previous", "--top", "3")
    assert len(heads["scores"]) == 3 and len(heads["scores"][0]) == 4 and len(heads["top"]) == 3
    assert heads["axes"] == {"scores": ["layer", "head"]} and heads["tokens"][0] == "<|im_start|>"
    lens = run_json("lens", "--model", "tiny-gpt2", "--prompt", EIFFEL, "--answer", " Paris",
                    "--wrong", " Rome")
    assert abs(lens["dla"]["sum_of_parts"] - lens["dla"]["logit_diff"]) < 1e-3
    assert len(lens["answer_prob"]) == len(lens["layers"]) == 4


@pytest.mark.parametrize("args,message", [
    (["attention", "--model", "no-such-model", "--prompt", "hi"], "unknown model 'no-such-model'"),
    (["attention", "--model", "tiny-llama", "--prompt", ""], "empty prompt"),
    (["attention", "--model", "tiny-llama", "--prompt", "hi", "--layer", "7"], "layer 7 is out of range"),
    (["attention", "--model", "tiny-llama", "--prompt", "hi", "--layer", "0", "--head", "9"],
     "head 9 is out of range"),
    (["lens", "--model", "tiny-llama", "--prompt", EIFFEL, "--answer", " San Francisco"],
     "is 2 tokens"),
    (["lens", "--model", "tiny-llama", "--prompt", EIFFEL, "--wrong", " Rome"], "--wrong needs --answer"),
])
def test_bad_input_is_one_line(args, message):
    assert_one_line_error(*args, message=message)


def test_model_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run_in_process("attention", "--model", str(tmp_path), "--prompt", "hi")
    assert code == 2 and "has no weights" in err and "Traceback" not in err


def test_html_is_not_written_on_error(tmp_path):
    html = tmp_path / "out.html"
    code, _, _ = run_in_process("attention", "--model", "tiny-llama", "--prompt", "", "--html", str(html))
    assert code == 2 and not html.exists()


@pytest.mark.slow
def test_embedded_heads_verb_finds_induction_heads():
    out = run_json("heads", "--detect", "induction")
    names = [h["name"] for h in out["top"]]
    assert names[0] == "L18H6" and {"L17H3", "L17H4", "L17H5"} <= set(names[:6])
    assert out["loss_first_repeat"] > 12 and out["loss_second_repeat"] < 2.5


@pytest.mark.slow
def test_embedded_lens_verb():
    code, stdout, err = run_in_process("lens", "--prompt", EIFFEL, "--answer", " Paris", "--wrong", " Rome", "--json")
    assert code == 0 and "Loading weights" not in err  # transformers' bar is silenced in the CLI
    out = json.loads(stdout)
    assert out["model"] == "smollm2-135m" and out["tokens"][1] == " E"
    assert out["top_tokens"][-1][0]["token"] == " Paris" and out["answer_rank"][-1] == 0
    assert abs(out["dla"]["sum_of_parts"] - out["dla"]["logit_diff"]) < 1e-3


COLOSSEUM = "The Colosseum is located in the city of"
PAIR = ["--clean", EIFFEL, "--corrupt", COLOSSEUM, "--answer", " Paris", "--wrong", " Rome"]


def test_patch_json_on_tiny_llama():
    out = run_json("patch", "--model", "tiny-llama", *PAIR, "--site", "head_out")
    assert out["axes"]["values"] == ["layer", "pos", "head"] and out["method"] == "exact"
    assert len(out["values"]) == 3 and len(out["values"][0]) == len(out["tokens"]) == 10
    assert len(out["values"][0][0]) == 4 and out["corrupt_tokens"][1] == " Col"
    norm, vals = out["normalized"], out["values"]
    gap = out["clean_baseline"] - out["corrupt_baseline"]
    assert abs(norm[1][2][3] - (vals[1][2][3] - out["corrupt_baseline"]) / gap) < 1e-3


def test_patch_attribution_with_agreement():
    out = run_json("patch", "--model", "tiny-gpt2", *PAIR, "--site", "attn_out", "--method", "attribution",
                   "--compare")
    assert out["method"] == "attribution" and -1 <= out["agreement"]["pearson_r"] <= 1


def test_circuit_json_on_tiny_gpt2(tmp_path):
    out = run_json("circuit", "--model", "tiny-gpt2", *PAIR, "--edges", "20", "--sizes", "20,5,100000",
                   "--html", str(tmp_path / "c.html"))
    assert out["n_edges"] == 20 and len(out["edges"]) == 20 and out["n_edges_total"] > 20
    assert out["curve"]["sizes"] == [5, 20, out["n_edges_total"]]
    assert out["curve"]["faithfulness"][1] == pytest.approx(out["faithfulness"], abs=1e-6)
    assert out["curve"]["faithfulness"][2] == pytest.approx(1.0, abs=1e-3)
    assert {"src", "dst", "input", "score"} <= set(out["edges"][0])
    assert isinstance(out["faithfulness"], float) and (tmp_path / "c.html").exists()


@pytest.mark.parametrize("args,message", [
    (["patch", "--model", "tiny-llama", "--clean", EIFFEL, "--corrupt", "The Vatican is located in the city of",
      "--answer", " Paris", "--wrong", " Rome"], "tokenize to different lengths: clean ['The', ' E'"),
    (["patch", "--model", "tiny-llama", *PAIR[:6], "--wrong", " New York"], "wrong answer ' New York' is 2 tokens"),
    (["patch", "--model", "tiny-llama", "--clean", EIFFEL, "--corrupt", EIFFEL, "--answer", " Paris",
      "--wrong", " Rome"], "clean and corrupt prompts are identical"),
    (["patch", "--model", "tiny-llama", *PAIR[:6], "--wrong", " Paris"], "the answer and the wrong token are the same"),
    (["patch", "--model", "tiny-llama", *PAIR, "--site", "resid_post"], "unknown site 'resid_post'"),
    (["circuit", "--model", "tiny-llama", *PAIR, "--edges", "0"], "--edges: must be at least 1, not 0"),
])
def test_patching_bad_input_is_one_line(args, message):
    assert_one_line_error(*args, message=message)


@pytest.mark.slow
def test_embedded_patch_shows_the_fact_moving():
    """The issue's claim: the answer's information moves from the subject tokens to the
    final position in the upper layers."""
    out = run_json("patch", *PAIR, "--site", "resid_pre")
    norm = out["normalized"]
    assert out["tokens"][1:4] == [" E", "iffel", " Tower"] and len(norm) == 30
    early_subject = max(max(row[1:4]) for row in norm[:20])
    assert early_subject > 0.7 and all(abs(row[-1]) < 0.2 for row in norm[:20])
    assert all(row[-1] > 0.75 for row in norm[25:]) and all(max(row[1:4]) < 0.1 for row in norm[25:])


def test_trace_json_on_tiny_gpt2(tmp_path):
    out = run_json("trace", "--model", "tiny-gpt2", "--prompt", EIFFEL, "--subject", "Eiffel Tower",
                   "--samples", "2", "--kind", "all", "--html", str(tmp_path / "t.html"))
    assert out["subject_range"] == [2, 5] and out["tokens"][2:5] == [" E", "iffel", " Tower"]
    assert set(out["scores"]) == {"hidden", "mlp", "attn"}
    assert len(out["scores"]["mlp"]) == 11 and len(out["scores"]["mlp"][0]) == 3
    assert out["axes"]["scores.mlp"] == ["token", "layer"] and (tmp_path / "t.html").exists()


@pytest.mark.parametrize("args,message", [
    (["--subject", "Big Ben"], "subject 'Big Ben' is not in the prompt"),
    (["--subject", "Eiffel Tower", "--samples", "0"], "--samples: must be at least 1, not 0"),
    (["--subject", "Eiffel Tower", "--answer", " New York"], "is 2 tokens"),
])
def test_trace_bad_input_is_one_line(args, message):
    assert_one_line_error("trace", "--model", "tiny-llama", "--prompt", EIFFEL, *args, message=message)


@pytest.mark.slow
def test_embedded_trace_shows_romes_pattern():
    out = run_json("trace", "--prompt", EIFFEL, "--subject", "The Eiffel Tower", "--samples", "4")
    mlp, attn = out["scores"]["mlp"], out["scores"]["attn"]
    last_subject, last = out["subject_range"][1] - 1, len(out["tokens"]) - 1
    best_mlp = max((v, t, l) for t, row in enumerate(mlp) for l, v in enumerate(row))
    best_attn = max((v, t, l) for t, row in enumerate(attn) for l, v in enumerate(row))
    assert out["answer"] == " Paris" and out["corrupt_prob"] < 0.1 < out["clean_prob"]
    # ROME: MLP effect at the (last) subject tokens early; attention at the last token late.
    assert best_mlp[1] in range(*out["subject_range"]) and best_mlp[2] < 15
    assert best_attn[1] == last and best_attn[2] >= 15
    assert last_subject in range(*out["subject_range"])


def test_trace_average_json(tmp_path):
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"facts": [
        {"template": "{} is located in the city of", "subject": "The Eiffel Tower", "answer": " Paris"},
        {"template": "The capital of {} is the city of", "subject": "France", "answer": " Paris"}]}))
    out = run_json("trace", "--model", "tiny-llama", "--average", "--facts", str(facts), "--samples", "2",
                   "--kind", "mlp")
    assert out["n_facts"] == 2 and len(out["roles"]) == 6
    assert len(out["effects"]["mlp"]) == 6 and len(out["effects"]["mlp"][0]) == 3
    code, _, err = run_in_process("trace", "--model", "tiny-llama", "--average", "--facts", str(tmp_path / "none.json"))
    assert code == 2 and "cannot read facts file" in err


def test_edit_json_on_tiny_llama(tmp_path):
    out = run_json("edit", "--model", "tiny-llama", "--prompt", "{} is located in the city of", "--subject",
                   "The Eiffel Tower", "--target", " Rome", "--layer", "1", "--cov-tokens", "1024",
                   "--corpus", "bbc-news", "--steps", "3", "--max-new-tokens", "4", "--html", str(tmp_path / "e.html"),
                   env={"INTERP_CACHE": str(tmp_path / "cache")})
    assert out["layer"] == 1 and out["edit"]["layer"] == 1 and out["edit"]["active"]
    assert len(out["completions"]["before"]) == len(out["completions"]["after"]) == len(out["completion_prompts"]) == 2
    assert set(out["probs"]["after"]) == {"target", "previous_answer"} and (tmp_path / "e.html").exists()
    assert out["edit"]["covariance"]["tokens"] == 1024 and out["edit"]["key_residual"] < 1e-3


@pytest.mark.parametrize("args,message", [
    (["--prompt", "The Eiffel Tower is located in", "--subject", "The Eiffel Tower", "--target", " Rome"],
     "has no '{}' where the subject goes"),
    (["--prompt", "Paris is nice", "--subject", "Big Ben", "--target", " Rome"], "is not in the prompt"),
    (["--prompt", "{} is located in", "--subject", "Big Ben", "--target", " Rome", "--layer", "9"],
     "layer 9 is out of range"),
    (["--eval", "no-such-file.json"], "cannot read request file"),
    (["--subject", "Big Ben"], "edit needs --prompt"),
])
def test_edit_bad_input_is_one_line(args, message):
    assert_one_line_error("edit", "--model", "tiny-llama", *args, message=message)


@pytest.mark.slow
def test_embedded_edit_eval_json(tmp_path):
    """Two shipped requests, edited at the peak MLP layer with a short corpus sample."""
    out = run_json("edit", "--eval", "default", "--limit", "2", "--layer", "4", "--cov-tokens", "20000",
                   "--no-fluency", "--html", str(tmp_path / "eval.html"))
    assert out["n_requests"] == 2 and out["post"]["ES"] == 100.0 and out["pre"]["ES"] == 0.0
    assert out["post"]["S"] > 0 and (tmp_path / "eval.html").exists()
    assert [r["subject"] for r in out["requests"]] == ["The Eiffel Tower", "The Colosseum"]


def test_probe_json_on_tiny_llama(tmp_path):
    out = run_json("probe", "--model", "tiny-llama", "--dataset", "sentiment", "--dataset", "pos", "--layers", "0,2",
                   "--folds", "3", "--html", str(tmp_path / "p.html"))
    assert set(out["results"]) == {"sentiment", "pos"} and out["layers"] == [0, 2]
    r = out["results"]["pos"]
    assert len(r["accuracy"]) == len(r["selectivity"]) == len(r["ci_low"]) == 2
    assert out["best_layer"]["pos"] in (0, 2) and (tmp_path / "p.html").exists()


@pytest.mark.parametrize("args,message", [
    (["probe", "--dataset", "no-such-set"], "neither a shipped one"),
    (["probe", "--dataset", "truth", "--layers", "0,x"], "comma-separated integers"),
    (["probe", "--dataset", "truth", "--layers", "0,7"], "layer 7 is out of range"),
    (["steer", "--dataset", "sentiment", "--positive", "happy"], "is not one of the dataset's labels"),
])
def test_probe_bad_input_is_one_line(args, message):
    assert_one_line_error(*args, "--model", "tiny-llama", message=message)


def test_probe_one_class_file_is_one_line(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"examples": [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]}))
    assert_one_line_error("probe", "--model", "tiny-llama", "--dataset", str(path), message="only one class")


def test_steer_json_on_tiny_llama():
    out = run_json("steer", "--model", "tiny-llama", "--layer", "1", "--alphas=-2,0,2", "--prompt", "The movie",
                   "--max-new-tokens", "4")
    assert out["alphas"] == [-2.0, 0.0, 2.0] and len(out["generations"]) == 3 and len(out["scores"][0]) == 1
    assert all(0 <= s <= 1 for s in out["mean_score"]) and out["positive"] == "positive"


def test_sae_train_and_eval_json(tmp_path):
    out = run_json("sae", "train", "--model", "tiny-llama", "--hook", "blocks.1.hook_resid_post", "--arch", "relu",
                   "--d-sae", "128", "--tokens", "4096", "--batch-size", "512", "--corpus", "bbc-news",
                   "--init-seed", "3", "--out", str(tmp_path / "sae"))
    assert out["steps"] == 8 and out["d_sae"] == 128 and {"l0", "fvu", "dead_frac"} <= set(out["final"])
    assert (tmp_path / "sae" / "cfg.json").exists() and (tmp_path / "sae" / "metrics.jsonl").exists()
    recorded = json.loads((tmp_path / "sae" / "train_config.json").read_text())
    assert (recorded["seed"], recorded["init_seed"]) == (0, 3)
    ev = run_json("sae", "eval", str(tmp_path / "sae"), "--model", "tiny-llama", "--corpus", "bbc-news",
                  "--tokens", "1024", "--skip-rows", "500")
    assert ev["tokens"] == 8 * 127 and 0 <= ev["dead_frac"] <= 1 and "ce_loss_recovered" in ev  # sinks skipped


@pytest.mark.parametrize("args,message", [
    (["train", "--hook", "blocks.1.hook_resid_post", "--arch", "gated", "--out", "x"], "unknown SAE architecture"),
    (["train", "--hook", "blocks.7.hook_resid_post", "--out", "x"], "has no hook"),
    (["eval", "no-such-dir"], "no-such-dir is not an SAE directory"),
])
def test_sae_bad_input_is_one_line(args, message, tmp_path):
    args = [a if a != "x" else str(tmp_path / "x") for a in args]
    assert_one_line_error("sae", *args, "--model", "tiny-llama", message=message)


def test_probe_reports_sae_features_by_cosine(tmp_path):
    from saes import SAEConfig, make_sae, save_sae

    save_sae(make_sae(SAEConfig("topk", 64, 96, hook_name="blocks.1.hook_resid_post", k=4)), tmp_path / "sae")
    out = run_json("probe", "--model", "tiny-llama", "--dataset", "pos", "--layers", "0,1", "--folds", "3",
                   "--sae", str(tmp_path / "sae"))
    feats = out["results"]["pos"]["sae_features"]
    assert feats["layer"] == 1 and feats["hook"] == "blocks.1.hook_resid_post"
    (label, top), = feats["top"].items()
    assert label == "verb" and len(top) == 10 and all(-1 <= f["cosine"] <= 1 for f in top)
    assert abs(top[0]["cosine"]) >= abs(top[-1]["cosine"])


@pytest.mark.parametrize("args,message", [
    (["sae", "train", "--hook", "blocks.0.hook_resid_post", "--tokens", "0", "--out", "x"], "--tokens: must be at least 1, not 0"),
    (["sae", "train", "--hook", "blocks.0.hook_resid_post", "--tokens", "-5", "--out", "x"], "--tokens: must be at least 1, not -5"),
    (["heads", "--top", "0"], "--top: must be at least 1, not 0"),
    (["attention", "--prompt", "hi", "--layer", "-1"], "--layer: must be 0 or more, not -1"),
    (["edit", "--layer", "-1"], "negative indices are not supported"),
    (["attention", "--prompt", "hi", "--head", "x"], "expected an integer, not 'x'"),
    (["attention", "--prompt", "hi", "--model", "tiny-gpt2", "--device", "cuda:7"], "--device cuda:7"),
    (["lens", "--model", "tiny-gpt2", "--prompt", EIFFEL, "--answer", " Rome", "--wrong", " Rome"],
     "the answer and the wrong token are the same"),
])
def test_bad_sizes_indices_and_devices_are_one_line_before_any_work(args, message, tmp_path):
    """Refused up front with exit 2 (`--tokens 0` used to train one step and exit 0; `--device cuda`
    on a CPU-only torch was an internal error with exit 1)."""
    assert_one_line_error(*args, message=message)
    assert not (tmp_path / "x").exists()


def test_version_and_help_show_defaults():
    code, out, _ = run_in_process("--version")
    assert code == 0 and out.startswith("interp ")
    code, out, _ = run_in_process("heads", "--help")
    assert code == 0 and "(default: 10)" in out and "(default: induction)" in out


def test_progress_off_a_terminal_is_plain_lines(capsys):
    """Redirected stderr gets whole lines (no carriage-return redraws) with the count and rate."""
    from interp.progress import progress

    for _ in progress(range(3), desc="tracing", unit="cell"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and err.strip().splitlines()[-1].startswith("tracing: 3/3 cell")


def test_terminal_summaries_tell_the_result():
    """Without --json: attention names its strongest query -> key pairs, patch its top cells with
    token and layer, lens honours --top and lists the largest DLA parts."""
    code, out, _ = run_in_process("attention", "--model", "tiny-gpt2", "--prompt", "The cat sat on the mat", "--layer", "1")
    pairs = out.split("(first position left out):")[1].strip().splitlines()[:-1]  # the last line: seconds
    assert code == 0 and len(pairs) == 5 and all(l.strip().startswith("L1H") and "->" in l for l in pairs)
    code, out, _ = run_in_process("patch", "--model", "tiny-gpt2", *PAIR, "--site", "resid_pre")
    cells = out.split("strongest normalised cells:")[1].strip().splitlines()[:5]
    assert code == 0 and all(l.strip().startswith("L") and "'@" in l for l in cells)
    code, out, _ = run_in_process("lens", "--model", "tiny-gpt2", "--prompt", EIFFEL, "--answer", " Paris", "--wrong", " Rome",
                       "--top", "3")
    layer0 = next(l for l in out.splitlines() if l.startswith("L0 "))
    assert code == 0 and layer0.split("|")[0].count("'") >= 6 and "largest parts:" in out


def test_path_patch_verb_equals_the_library_sweep(tiny_models):
    """`interp path-patch` is path_patch_sweep: every head as the sender, [layer][head], null where no
    path exists (senders at or after the receivers' layer)."""
    import torch

    from interp.metrics import make_task
    from interp.circuits.path_patching import path_patch_sweep

    out = run_json("path-patch", "--model", "tiny-gpt2", *PAIR, "--receivers", "L2H1", "--receiver-input", "v")
    model = tiny_models["tiny-gpt2"]
    ref = path_patch_sweep(model, make_task(model, EIFFEL, COLOSSEUM, " Paris", " Rome"), [(2, 1)], "v")
    got = torch.tensor([[float("nan") if v is None else v for v in row] for row in out["values"]])
    assert out["axes"]["values"] == list(ref.axes) and out["values"][2] == [None] * model.cfg.n_heads
    torch.testing.assert_close(got, ref.values.float(), atol=1e-4, rtol=1e-4, equal_nan=True)
    assert_one_line_error("path-patch", "--model", "tiny-gpt2", *PAIR, "--receivers", "head9",
                          message="--receivers 'head9': give 'logits' or heads as L9H6,L9H9")


def test_every_flag_has_help():
    import argparse

    from interp.cli import build_parser

    missing = []

    def walk(parser, prefix):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{prefix} {name}")
            elif a.option_strings and not (a.help or "").strip():
                missing.append(f"{prefix} {a.option_strings[-1]}")
    walk(build_parser("interp"), "interp")
    assert missing == []
