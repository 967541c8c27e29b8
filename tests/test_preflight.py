"""Refusals before the work: every layer, head, feature and position argument is checked against the
model's config (interp.cli._preflight) before any weights load, a graph's interventions before the
attribution starts, and a graph file, a probe dataset or a mode's unused flags in one line."""

import json
import os
from unittest import mock

import pytest

from interp.architectures import ModelShape, nearest_names, shape_from_config
from interp.models import model_shape, prompt_token_ids
from interp.tokens import to_tokens
from tests.conftest import EIFFEL, TINY
from tests.test_cli import assert_one_line_error, run_in_process, run_json
from tests.test_graph import PROMPT, random_set

PROMPTS = [EIFFEL, " hello", "a\nb  c", "<|endoftext|> x", "日本語 émoji 🤖", "3 + 4 ="]


def _bridge_shape(model) -> ModelShape:
    c = model.cfg
    return ModelShape(c.n_layers, c.n_heads, getattr(c, "n_key_value_heads", None) or c.n_heads, c.d_model,
                      c.d_head, c.d_mlp, c.d_vocab, c.n_ctx)


@pytest.mark.parametrize("name", TINY)
def test_the_shape_without_weights_equals_the_loaded_model(tiny_models, name, tmp_path):
    model = tiny_models[name]
    assert model_shape(name) == _bridge_shape(model)
    assert shape_from_config(model.original_model.config.to_dict()) == _bridge_shape(model)
    import torch
    from safetensors.torch import save_file

    (tmp_path / name).mkdir()  # a local model directory: the shape comes from its config.json alone
    (tmp_path / name / "config.json").write_text(model.original_model.config.to_json_string())
    save_file({"unread": torch.zeros(1)}, tmp_path / name / "model.safetensors")
    assert model_shape(str(tmp_path / name)) == _bridge_shape(model)


@pytest.mark.slow
def test_the_embedded_models_table_equals_the_loaded_model(smol):
    assert model_shape("smollm2-135m") == _bridge_shape(smol)
    for text in PROMPTS:
        assert prompt_token_ids("smollm2-135m", text) == to_tokens(smol, text)[0].tolist()


@pytest.mark.parametrize("name", TINY)
def test_prompt_token_ids_equal_the_bridges_tokens(tiny_models, name):
    for text in PROMPTS:
        assert prompt_token_ids(name, text) == to_tokens(tiny_models[name], text)[0].tolist(), text


def test_a_misspelt_model_gets_the_nearest_name():
    assert nearest_names("smollm2-135") == ["smollm2-135m"]
    assert nearest_names("tiny-lama")[0] == "tiny-llama"
    assert nearest_names("zzzz") == []


def test_shape_from_config_reads_each_familys_keys():
    gpt2 = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "vocab_size": 50257, "n_inner": None}
    assert shape_from_config(gpt2) == ModelShape(12, 12, 12, 768, 64, 3072, 50257, 1024)
    gemma3 = {"model_type": "gemma3", "text_config": {"num_hidden_layers": 34, "num_attention_heads": 8,
              "num_key_value_heads": 4, "hidden_size": 2560, "head_dim": 256, "intermediate_size": 10240,
              "vocab_size": 262208, "max_position_embeddings": 131072}}
    assert shape_from_config(gemma3) == ModelShape(34, 8, 4, 2560, 256, 10240, 262208, 131072)
    assert shape_from_config({"hidden_size": 8}) is None


def _no_weights(*args, **kwargs):
    raise AssertionError("model weights were loaded before the refusal")


@pytest.mark.parametrize("args, message", [
    (["lens", "--prompt", EIFFEL, "--model", "smollm2-135"], "did you mean 'smollm2-135m'"),
    (["attention", "--prompt", EIFFEL, "--layer", "30", "--head", "0"], "--layer 30 is out of range"),
    (["attention", "--prompt", EIFFEL, "--layer", "18", "--head", "9"], "--head 9 is out of range"),
    (["weights", "--stat", "ov", "--layer", "40", "--head", "0"], "--layer 40 is out of range"),
    (["patch", "--clean", "The cat sat", "--corrupt", "The big dog sat", "--answer", " on", "--wrong", " in"],
     "different lengths"),
    (["trace", "--prompt", EIFFEL, "--subject", "Big Ben"], "not in the prompt"),
    (["edit", "--prompt", "{} is in", "--subject", "X", "--target", " Y", "--layer", "30"], "out of range"),
    (["probe", "--dataset", "truth", "--layers", "0-40"], "--layers 0-40: layer 30 is out of range"),
    (["relation", "--dataset", "country_capital", "--layer", "99"], "--layer 99 is out of range"),
    (["steer", "--dataset", "sentiment", "--scorer-layer", "31"], "--scorer-layer 31 is out of range"),
    (["attention", "--prompt", EIFFEL, "--layer", "3", "--model", "tiny-llama"], "the model has 3 layers"),
    (["attention", "--prompt", EIFFEL, "--layer", "0", "--head", "4", "--model", "tiny-gpt2"], "4 heads"),
])
def test_each_argument_that_cannot_fit_is_refused_before_any_weights_load(args, message):
    with mock.patch("interp.models.load_model", _no_weights):
        assert_one_line_error(*args, message=message)


@pytest.fixture(scope="module")
def graph_set(tiny_models, tmp_path_factory):
    """A random transcoder set on tiny-llama in circuit-tracer's layout, with an inactive feature's
    coordinates: (layer, feature active somewhere, a position where it is not, a feature never active)."""
    from interp.circuits.local_replacement import clean_parts, clean_run
    from saes.transcoder import save_circuit_tracer

    model = tiny_models["tiny-llama"]
    tset = random_set(model, seed=11)
    path = tmp_path_factory.mktemp("tc") / "set"
    save_circuit_tracer(tset, path)
    tokens = to_tokens(model, PROMPT)
    _, _, acts = clean_parts(model, tset, clean_run(model, tset, tokens)["cache"])
    f = acts[1]
    active = int((f[1:] > 0).any(0).nonzero()[0, 0])
    off = next(p for p in range(1, f.shape[0]) if f[p, active] <= 0)
    never = int((f[1:] > 0).any(0).logical_not().nonzero()[0, 0])
    return str(path), active, off, never


def test_a_graphs_bad_features_are_refused_before_the_attribution(graph_set):
    path, active, off, never = graph_set
    base = ("graph", "--model", "tiny-llama", "--transcoders", path, "--prompt", PROMPT)
    with mock.patch("interp.models.load_model", _no_weights):  # from the arguments, the config and the tokenizer
        assert_one_line_error(*base, "--edge-threshold", "1.5", message="(0, 1]")
        assert_one_line_error(*base, "--ablate", "7:1", message="--ablate 7:1: layer 7 is out of range")
        assert_one_line_error(*base, "--ablate", "1:999", message="feature 999 is out of range: the dictionary has 48")
        assert_one_line_error(*base, "--ablate", "1:2@99", message="--ablate 1:2@99: position 99 is past the end of the prompt")
        assert_one_line_error(*base, "--steer", "1:2=nan", message="must be finite")
        with mock.patch.dict(os.environ, {"INTERP_GRAPH_MEMORY_GB": "1"}):  # the limit follows the machine: set one
            assert_one_line_error("graph", "--model", "tiny-llama", "--transcoders", path, "--prompt", PROMPT * 40,
                                  "--batch", "1024", message="fits")
    with mock.patch("interp.circuits.graph.frozen_forward", side_effect=AssertionError("attribution started")):
        assert_one_line_error(*base, "--ablate", f"1:{active}@{off}", message="not active at position")
        assert_one_line_error(*base, "--steer", f"1:{never}=4.0", message="not active anywhere on this prompt")


def test_graph_read_refuses_the_flags_it_would_ignore(graph_set, tmp_path):
    path, active, _, _ = graph_set
    out = tmp_path / "g.json"
    run_json("graph", "--model", "tiny-llama", "--transcoders", path, "--prompt", PROMPT, "--out", str(out))
    assert run_json("graph", "--read", str(out))["prompt"] == PROMPT
    assert_one_line_error("graph", "--read", str(out), "--prompt", "ignored", "--ablate", "1:2",
                          message="--prompt and --ablate do nothing with --read")
    assert_one_line_error("graph", "--read", str(out), "--model", "tiny-llama", message="--model does nothing")
    assert_one_line_error("graph", "--read", str(out), "--node-threshold", "0.5", message="--node-threshold")


def _broken_graphs(good: dict) -> dict[str, bytes | None]:
    def edit(f):
        doc = json.loads(json.dumps(good))
        f(doc)
        return json.dumps(doc).encode()

    node = next(n for n in good["nodes"] if n["feature_type"] == "cross layer transcoder")
    return {
        "nodes is an object": edit(lambda d: d.update(nodes={"a": 1})),
        "node is not an object": edit(lambda d: d["nodes"].append("x")),
        "node lacks a field": edit(lambda d: d["nodes"][0].pop("ctx_idx")),
        "node field of the wrong type": edit(lambda d: d["nodes"][0].update(ctx_idx="3")),
        "node id twice": edit(lambda d: d["nodes"].append(dict(node))),
        "unknown feature_type": edit(lambda d: d["nodes"][0].update(feature_type="neuron")),
        "links is a string": edit(lambda d: d.update(links="none")),
        "link to nowhere": edit(lambda d: d["links"].append({"source": "x", "target": "y", "weight": 1.0})),
        "link with a list id": edit(lambda d: d["links"].append({"source": [1], "target": "y", "weight": 1.0})),
        "link weight a boolean": edit(lambda d: d["links"][0].update(weight=True)),
        "metadata is a list": edit(lambda d: d.update(metadata=[])),
        "metadata lacks the prompt": edit(lambda d: d["metadata"].pop("prompt")),
        "prompt is a number": edit(lambda d: d["metadata"].update(prompt=3)),
        "prompt_tokens not strings": edit(lambda d: d["metadata"].update(prompt_tokens=[1, 2])),
        "another schema version": edit(lambda d: d["metadata"].update(schema_version=2)),
        "no schema version": edit(lambda d: d["metadata"].pop("schema_version")),
        "top level a list": b"[1, 2]",
        "empty file": b"",
        "not JSON": b"{nodes: ",
        "Latin-1 text": json.dumps({"metadata": {"prompt": "caf\u00e9"}}).encode().replace(b"\\u00e9", b"\xe9"),
        "a directory": None,
    }


def test_graph_read_refuses_every_malformed_file_in_one_line(graph_set, tmp_path):
    path, _, _, _ = graph_set
    good = tmp_path / "good.json"
    run_json("graph", "--model", "tiny-llama", "--transcoders", path, "--prompt", PROMPT, "--out", str(good))
    for i, (why, data) in enumerate(_broken_graphs(json.loads(good.read_text())).items()):
        bad = tmp_path / f"bad{i}"
        if data is None:
            bad.mkdir()
        else:
            bad.write_bytes(data)
        code, out, err = run_in_process("graph", "--read", str(bad), "--json")
        lines = [l for l in err.splitlines() if l.startswith("interp:")]
        assert (code, out) == (2, ""), (why, err)
        assert len(lines) == 1 and "internal error" not in lines[0] and "Traceback" not in err, (why, err)


def test_probe_refuses_a_non_utf8_dataset_in_one_line(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"examples": [{"text": "caf\u00e9", "label": "a"}]}'.encode("latin-1"))
    with mock.patch("interp.models.load_model", _no_weights):
        assert_one_line_error("probe", "--dataset", str(path), "--model", "tiny-llama", message="is not UTF-8")


def test_a_verb_with_a_tagged_flag_is_checked_for_free():
    """The preflight knows no verb: a parser that types a flag as a layer gets the check."""
    import argparse

    from interp.cli._common import head, layer
    from interp.cli._preflight import preflight
    from interp.errors import InterpError

    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--from-layer", type=layer)
    p.add_argument("--heads", type=head, nargs="+")
    preflight(p.parse_args(["--model", "tiny-llama", "--from-layer", "2", "--heads", "0", "3"]))
    with pytest.raises(InterpError, match="--from-layer 3 is out of range"):
        preflight(p.parse_args(["--model", "tiny-llama", "--from-layer", "3"]))
    with pytest.raises(InterpError, match="--heads 4 is out of range"):
        preflight(p.parse_args(["--model", "tiny-llama", "--heads", "1", "4"]))
