"""Cross-layer transcoders read and written exactly (issue 40): Gemma Scope 2's layout and circuit-tracer's,
every layer's file used, the affine skip kept, broken files refused in one line."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.errors import InterpError
from saes.clt import CrossLayerTranscoder, load_clt, save_circuit_tracer_clt, save_gemma_scope_clt

L, D, F = 3, 8, 12


def hand_set(skip: bool, seed: int = 0) -> CrossLayerTranscoder:
    g = torch.Generator().manual_seed(seed)
    clt = CrossLayerTranscoder(L, D, F, skip)
    with torch.no_grad():
        clt.W_enc.copy_(torch.randn(L, D, F, generator=g) / D ** 0.5)
        clt.b_enc.copy_(torch.randn(L, F, generator=g) * 0.1)
        clt.log_threshold.copy_((torch.rand(L, F, generator=g) * 0.4 + 0.05).log())
        for i in range(L):
            clt.W_dec[i].copy_(torch.randn(F, L - i, D, generator=g) * 0.3)
        clt.b_dec.copy_(torch.randn(L, D, generator=g) * 0.2)
        if skip:
            clt.W_skip.copy_(torch.randn(L, D, D, generator=g) * 0.1)
    return clt


def by_hand_gemma_scope(folder, xs):
    """Gemma Scope 2's formula in float64 from the files themselves: z = x w_enc + b_enc, f = z·1[z > θ],
    ŷ_l = Σ_{i ≤ l} f_i w_dec_i[:, l] + b_dec_l + x_l · skip_l."""
    files = [load_file(str(folder / f"params_layer_{i}.safetensors")) for i in range(L)]
    t = [{k: v.double() for k, v in f.items()} for f in files]
    feats = []
    for i in range(L):
        z = xs[i] @ t[i]["w_enc"] + t[i]["b_enc"]
        feats.append(z * (z > t[i]["threshold"]))
    out = []
    for layer in range(L):
        y = t[layer]["b_dec"] + sum(feats[i] @ t[i]["w_dec"][:, layer] for i in range(layer + 1))
        if "affine_skip_connection" in t[layer]:
            y = y + xs[layer] @ t[layer]["affine_skip_connection"]
        out.append(y)
    return out


@pytest.mark.parametrize("skip", [False, True])
def test_gemma_scope_layout_computes_the_formula_with_every_layer_file(tmp_path, skip):
    folder = save_gemma_scope_clt(hand_set(skip), tmp_path / "clt" / "width_12")
    clt = load_clt(folder)
    assert (clt.W_skip is not None) == skip
    xs = {i: torch.randn(50, D, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(L)}
    got = clt.reconstruct({i: x.float() for i, x in xs.items()})
    want = by_hand_gemma_scope(folder, xs)
    for layer in range(L):
        torch.testing.assert_close(got[layer].double(), want[layer], rtol=1e-5, atol=1e-5)
    # the last layer's file carries its own decoder bias and its encoder: read it, or the result changes
    (folder / f"params_layer_{L - 1}.safetensors").unlink()
    with pytest.raises(InterpError, match=f"decoders write {L} layers, but {L - 1} layer files") as err:
        load_clt(folder)
    assert "\n" not in str(err.value)


def test_an_affine_clt_round_trips_through_circuit_tracers_layout_with_its_skip(tmp_path):
    clt = hand_set(True, seed=1)
    back = load_clt(save_circuit_tracer_clt(clt, tmp_path / "ct"))
    assert back.W_skip is not None
    xs = {i: torch.randn(20, D, generator=torch.Generator().manual_seed(10 + i)) for i in range(L)}
    want, got = clt.reconstruct(xs), back.reconstruct(xs)
    for layer in range(L):
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(back.W_skip, clt.W_skip, rtol=0, atol=0)
    again = load_clt(save_gemma_scope_clt(back, tmp_path / "gs"))  # and on into Gemma Scope 2's
    torch.testing.assert_close(again.reconstruct(xs)[L - 1], want[L - 1], rtol=1e-5, atol=1e-6)


def test_a_broken_clt_is_refused_in_one_line(tmp_path):
    folder = save_gemma_scope_clt(hand_set(False), tmp_path / "clt")
    f = folder / "params_layer_1.safetensors"
    t = load_file(str(f))
    t["b_enc"] = torch.full_like(t["b_enc"], float("nan"))
    save_file(t, str(f))
    with pytest.raises(InterpError, match="non-finite"):
        load_clt(folder)
    t["b_enc"] = torch.zeros(F + 1)
    save_file(t, str(f))
    with pytest.raises(InterpError, match=r"b_enc has shape \(13,\)"):
        load_clt(folder)
    (folder / "params_layer_0.safetensors").unlink()
    with pytest.raises(InterpError, match="layer file 0 is missing"):
        load_clt(folder)
    with pytest.raises(InterpError, match="not a CLT folder"):
        load_clt(tmp_path / "nowhere")


def random_clt(model, width=16, seed=0) -> CrossLayerTranscoder:
    """A CLT over every MLP of ``model`` reading where the family's transcoders read (Gemma: the normed MLP
    input), with random weights whose features fire (an independent set for the graph tests)."""
    g = torch.Generator().manual_seed(seed)
    n, d = model.cfg.n_layers, model.cfg.d_model
    from interp.architectures import architecture

    clt = CrossLayerTranscoder(n, d, width, skip=True, hook_in=architecture(model).transcoder_input,
                               hook_out="blocks.{l}.hook_mlp_out", model_name=model.cfg.model_name)
    with torch.no_grad():
        clt.W_enc.copy_(torch.randn(n, d, width, generator=g) / d ** 0.5)
        clt.b_enc.copy_(torch.rand(n, width, generator=g) * 0.3)
        clt.log_threshold.copy_((torch.rand(n, width, generator=g) * 0.5 + 0.3).log())
        for i in range(n):
            clt.W_dec[i].copy_(torch.randn(width, n - i, d, generator=g) * 0.3)
        clt.b_dec.copy_(torch.randn(n, d, generator=g) * 0.1)
        clt.W_skip.copy_(torch.randn(n, d, d, generator=g) * 0.05)
    return clt.requires_grad_(False)


def _naive_frozen_clt(model, clt, tokens, drop):
    """The frozen replacement model of a CLT written out on its own: clean patterns and norm scales, each MLP
    output ŷ_l = Σ_{i ≤ l} f_i W_dec[i][:, l − i] + b_dec[l] + skip_l(x_l) + error_l with the clean features
    (none at position 0), one source zeroed (``drop``). Returns the demeaned last logits and every layer's
    pre-activations."""
    n = model.cfg.n_layers
    names = [k for k in model.hook_dict if k.endswith(("hook_scale", "hook_pattern"))]
    with torch.no_grad():
        reads = {clt.hook_in.format(l=i) for i in range(n)}
        _, cache = model.run_with_cache(tokens, names_filter=lambda k: k in names or "mlp_out" in k or k in reads or
                                        k == "hook_embed")
        x = {i: cache[clt.hook_in.format(l=i)][0] for i in range(n)}
        f = {}
        for i in range(n):
            pre = x[i] @ clt.W_enc[i] + clt.b_enc[i]
            f[i] = pre * (pre > clt.threshold[i])
            f[i][0] = 0
        def feats_out(fs, layer):
            return sum(fs[i] @ clt.W_dec[i][:, layer - i] for i in range(layer + 1)) + clt.b_dec[layer]
        err = {layer: cache[f"blocks.{layer}.hook_mlp_out"][0] - feats_out(f, layer) - x[layer] @ clt.W_skip[layer].T
               for layer in range(n)}
    f = {i: v.clone() for i, v in f.items()}
    err = {i: v.clone() for i, v in err.items()}
    emb = cache["hook_embed"].clone()
    if drop[0] == "token":
        emb[0, drop[1]] = 0
    if drop[0] == "feature":
        f[drop[1]][drop[2], drop[3]] = 0
    if drop[0] == "error":
        err[drop[1]][drop[2]] = 0
    seen, pres = {}, {}
    hooks = [(k, lambda v, hook: cache[hook.name]) for k in names] + [("hook_embed", lambda v, hook: emb)]
    for layer in range(n):
        def grab(v, hook, layer=layer):
            seen[layer] = v
            pres[layer] = v[0] @ clt.W_enc[layer] + clt.b_enc[layer]
            return v

        def put(y, hook, layer=layer):
            return (feats_out(f, layer) + seen[layer][0] @ clt.W_skip[layer].T + err[layer])[None]

        hooks += [(clt.hook_in.format(l=layer), grab), (f"blocks.{layer}.hook_mlp_out", put)]
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1]
    return logits - logits.mean(), pres


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_every_clt_graph_edge_equals_a_naive_loop(tiny_models, name):
    """A feature's node sits at its encoder's layer and its decoders write into every later MLP output: each
    edge against the frozen CLT model written out independently, one source zeroed at a time; the rows sum
    to the pre-activations; a frozen ablation equals the edges' prediction."""
    import numpy as np

    from interp.circuits.graph import attribution_graph
    from interp.circuits.graph_intervention import intervene
    from saes.transcoder import CLTSet
    from tests.test_graph import worst_edge_error

    model = tiny_models[name]
    clt = random_clt(model)
    g = attribution_graph(model, CLTSet(clt), "The Eiffel Tower is in the city of", batch=8,
                          first_position_errors="keep", label_features=False)
    from saes.transcoder import load_set

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:  # written in Gemma Scope 2's layout and read back as a set
        clt_back = load_set(save_gemma_scope_clt(clt, tmp)).clt
        torch.testing.assert_close(clt_back.W_dec[0], clt.W_dec[0], rtol=0, atol=0)
    assert g.n_features > 20 and g.check_exact() < 1e-4
    worst = worst_edge_error(g, lambda tokens, drop: _naive_frozen_clt(model, clt, tokens, drop))
    assert worst < 1e-4, worst
    # a feature of the lowest layer writes into every layer above it: its edges reach beyond its own layer's
    first = int(np.flatnonzero(g.features[:, 0] == 0)[0])
    targets = np.flatnonzero(g.adjacency[:g.n_features, first])
    assert (g.features[targets, 0] > 1).any()
    node = g.node(first)
    res = intervene(model, CLTSet(clt), g, [(node["layer"], node["feature"], node["position"], 0.0)])
    np.testing.assert_allclose(res.frozen_after, res.predicted_after, atol=1e-4)
    assert res.frozen_after != res.before


def test_the_graph_verb_takes_a_clt_folder_and_writes_json_that_validates(tiny_models, tmp_path):
    import json

    from interp.circuits.graph_json import validate_graph_json
    from tests.test_cli import run_json

    model = tiny_models["tiny-llama"]
    folder = save_gemma_scope_clt(random_clt(model, seed=5), tmp_path / "clt")
    out = run_json("graph", "--model", "tiny-llama", "--transcoders", str(folder), "--prompt",
                   "The Eiffel Tower is in the city of", "--max-feature-nodes", "64", "--out", str(tmp_path / "g.json"))
    # the folder's config.json keeps the hooks it reads (tiny-llama's resid_mid), so the active features are those
    assert out["exactness_max_error"] < 1e-4 and out["feature_nodes"] == min(64, out["active_features"]) > 20
    doc = json.loads((tmp_path / "g.json").read_text())
    validate_graph_json(doc)
    assert {n["feature_type"] for n in doc["nodes"]} >= {"cross layer transcoder", "logit"}
