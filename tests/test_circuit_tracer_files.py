"""The files circuit-tracer 0.5 reads, checked against what its source expects without installing it
(issue 43): ``load_transcoders(config)`` needs ``model_kind``, ``scan``, the two hooks and
``transcoders`` paths it opens against the working directory; ``load_relu_transcoder`` reads
``W_enc`` [d_transcoder, d_model], ``W_dec``, ``b_enc``, ``b_dec``, optional ``W_skip`` and
``activation_function.threshold`` (JumpReLU; ReLU without it); its CLI loads ``model_name`` from the
Hugging Face hub; ``create_graph_files`` writes each node's cumulative influence share and lists the
graph in ``graph-metadata.json``."""

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from safetensors import safe_open

from interp.errors import InterpError
from saes.io import save_sae
from saes.transcoder import load_set, save_circuit_tracer, write_set_manifest
from tests.test_graph import PROMPT, random_set


def _as_smollm2(tset):
    """A tiny set labelled as the embedded model's, to check the Hugging Face id written for it."""
    tset.model_name = "smollm2-135m"
    for sae in tset.layers.values():
        sae.cfg.model_name = "smollm2-135m"
    return tset


@pytest.mark.parametrize("arch", ["topk", "jumprelu"])
def test_config_yaml_has_the_keys_and_paths_circuit_tracers_loader_reads(tiny_models, tmp_path, monkeypatch, arch):
    model = tiny_models["tiny-llama"]
    tset = _as_smollm2(random_set(model, arch=arch, seed=4))
    save_circuit_tracer(tset, tmp_path / "tc")
    text = (tmp_path / "tc" / "config.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["model_kind"] == "transcoder_set" and isinstance(config["scan"], str) and config["scan"]
    assert config["model_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and config["interp_model"] == "smollm2-135m"
    assert config["feature_input_hook"] == "hook_resid_mid" and config["feature_output_hook"] == "hook_mlp_out"
    monkeypatch.chdir(tmp_path.parent)  # circuit-tracer opens the paths against the working directory
    assert len(config["transcoders"]) == model.cfg.n_layers
    for layer, file in enumerate(config["transcoders"]):
        assert os.path.isabs(file) and os.path.exists(file) and file.endswith(f"layer_{layer}.safetensors")
        with safe_open(file, "pt") as f:
            keys = set(f.keys())
            d_tc, d_model = f.get_tensor("W_enc").shape
            assert (d_tc, d_model) == (48, model.cfg.d_model)
            assert f.get_tensor("W_dec").shape == (d_tc, d_model) and f.get_tensor("b_enc").shape == (d_tc,)
            assert f.get_tensor("b_dec").shape == (d_model,) and f.get_tensor("W_skip").shape == (d_model, d_model)
        assert "log_thresholds" not in keys  # its loader asserts this is absent
        # JumpReLU where a threshold is present, ReLU otherwise: a TopK set has no file form there, said at the top
        assert ("activation_function.threshold" in keys) == (arch == "jumprelu")
    assert text.startswith("# circuit-tracer 0.5's loader reads no activation key") == (arch == "topk")
    assert config["activation"] == arch and (config.get("k") == 4) == (arch == "topk")
    back = load_set(tmp_path / "tc")  # our reader of the same file: our short name comes back
    assert back.model_name == "smollm2-135m" and sorted(back.layers) == list(range(model.cfg.n_layers))


def test_a_moved_set_points_its_config_yaml_at_its_new_folder(tiny_models, tmp_path):
    model = tiny_models["tiny-llama"]
    tset = random_set(model, seed=6)
    out = tmp_path / "set"
    dirs = {layer: f"layer_{layer}" for layer in tset.layers}
    for layer, sae in tset.layers.items():
        save_sae(sae, out / dirs[layer])
    write_set_manifest(out, "transcoders", model.cfg.model_name, "blocks.{l}.hook_resid_mid", "blocks.{l}.hook_mlp_out",
                       dirs)
    save_circuit_tracer(tset, out)
    moved = shutil.move(str(out), str(tmp_path / "elsewhere"))
    stale = yaml.safe_load((tmp_path / "elsewhere" / "config.yaml").read_text())["transcoders"]
    assert not any(os.path.exists(f) for f in stale)
    load_set(moved)
    fresh = yaml.safe_load((tmp_path / "elsewhere" / "config.yaml").read_text())["transcoders"]
    assert all(os.path.exists(f) and f.startswith(str(tmp_path / "elsewhere")) for f in fresh)


def test_graph_json_influence_is_circuit_tracers_cumulative_share(tiny_models):
    """circuit-tracer's prune_graph: node influence (logit weights left out) sorted from the largest, the
    running sum over the total; its frontend filters nodes on it. Ours stays in raw_influence."""
    from interp.circuits.graph import attribution_graph
    from interp.circuits.graph_json import node_ids
    from interp.figures.attribution_graph import node_weight

    model = tiny_models["tiny-llama"]
    g = attribution_graph(model, random_set(model, seed=7), PROMPT, label_features=False)
    p = g.prune()
    raw = (p.node_influence - g.logit_weights()).numpy()
    order = np.argsort(-raw, kind="stable")
    reference = np.zeros_like(raw)
    reference[order] = np.cumsum(raw[order]) / raw.sum()
    doc = g.to_json()
    row = {i: r for r, i in enumerate(node_ids(g))}
    for n in doc["nodes"]:
        if n["feature_type"] == "logit":
            assert n["influence"] is None
            continue
        assert n["influence"] == pytest.approx(reference[row[n["node_id"]]], rel=1e-5, abs=1e-9)
        assert 0 < n["influence"] <= 1 + 1e-9
        assert n["raw_influence"] == pytest.approx(float(p.node_influence[row[n["node_id"]]]), rel=1e-6)
    feats = [n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder"]
    top = min(feats, key=lambda n: n["influence"])
    assert top is max(feats, key=node_weight)  # the smallest share is the most influential node
    ct_style = {**top, "raw_influence": None}  # a circuit-tracer file: no raw_influence
    assert node_weight(ct_style) == pytest.approx(1 - top["influence"])


def test_out_lists_the_graph_in_graph_metadata_json(tiny_models, tmp_path):
    from tests.test_cli import assert_one_line_error, run_in_process

    model = tiny_models["tiny-llama"]
    save_circuit_tracer(random_set(model, seed=8), tmp_path / "tc")
    base = ("graph", "--model", "tiny-llama", "--transcoders", str(tmp_path / "tc"), "--json")
    for slug, prompt in (("eiffel", PROMPT), ("colosseum", "The Colosseum is in the city of"), ("eiffel", PROMPT)):
        code, out, _ = run_in_process(*base, "--prompt", prompt, "--out", str(tmp_path / "graphs" / f"{slug}.json"))
        assert code == 0 and json.loads(out)["index"] == str(tmp_path / "graphs" / "graph-metadata.json")
    listed = json.loads((tmp_path / "graphs" / "graph-metadata.json").read_text())["graphs"]
    assert [m["slug"] for m in listed] == ["colosseum", "eiffel"]  # the same slug written again replaces its entry
    metadata_fields = {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold",
                       "schema_version"}  # circuit-tracer's frontend Metadata model
    assert all(set(m) == metadata_fields for m in listed)
    (tmp_path / "graphs" / "graph-metadata.json").write_text("[1, 2]")
    assert_one_line_error(*base[:-1], "--prompt", PROMPT, "--out", str(tmp_path / "graphs" / "x.json"),
                          message="not a graph index")
    with pytest.raises(InterpError):
        from interp.circuits.graph_json import add_to_index

        add_to_index(tmp_path / "graphs" / "y.json", {"metadata": {"slug": "y"}})
