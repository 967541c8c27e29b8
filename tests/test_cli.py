"""The `interp` command: JSON contract and one-line errors, through a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import EIFFEL


def run(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "interp", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def run_json(*args):
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_models_json():
    out = run_json("models")
    names = [m["name"] for m in out["models"]]
    assert out["default"] == "smollm2-135m" and {"smollm2-135m", "tiny-gpt2", "tiny-llama"} <= set(names)
    assert all({"name", "kind", "offline", "cached", "description"} <= set(m) for m in out["models"])
    assert isinstance(out["seconds"], float)


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
    code, out, err = run(*args, "--json")
    assert code == 2 and out == ""
    lines = [l for l in err.splitlines() if l.startswith("interp:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_model_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run("attention", "--model", str(tmp_path), "--prompt", "hi")
    assert code == 2 and "has no weights" in err and "Traceback" not in err


def test_html_is_not_written_on_error(tmp_path):
    html = tmp_path / "out.html"
    code, _, _ = run("attention", "--model", "tiny-llama", "--prompt", "", "--html", str(html))
    assert code == 2 and not html.exists()


@pytest.mark.slow
def test_embedded_heads_verb_finds_induction_heads():
    out = run_json("heads", "--detect", "induction")
    names = [h["name"] for h in out["top"]]
    assert names[0] == "L18H6" and {"L17H3", "L17H4", "L17H5"} <= set(names[:6])
    assert out["loss_first_repeat"] > 12 and out["loss_second_repeat"] < 2.5


@pytest.mark.slow
def test_embedded_lens_verb():
    out = run_json("lens", "--prompt", EIFFEL, "--answer", " Paris", "--wrong", " Rome")
    assert out["model"] == "smollm2-135m" and out["tokens"][1] == " E"
    assert out["top_tokens"][-1][0]["token"] == " Paris" and out["answer_rank"][-1] == 0
    assert abs(out["dla"]["sum_of_parts"] - out["dla"]["logit_diff"]) < 1e-3
